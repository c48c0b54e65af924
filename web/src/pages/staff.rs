//! Staff pages: add and edit films, set copies and prices, and watch the shop's stock activity
//! live. Only for staff tokens (the services check again on every call).

use leptos::{prelude::*, task::spawn_local};
use videostore_display::money;
use videostore_proto::{catalogue::Movie, stock};

use crate::{SessionState, api::Api, components::status::ErrorMessage};

/// The form's fields, as typed.
#[derive(Clone, Copy)]
struct FilmForm {
    title: RwSignal<String>,
    year: RwSignal<String>,
    genres: RwSignal<String>,
    runtime: RwSignal<String>,
    director: RwSignal<String>,
    rating: RwSignal<String>,
    synopsis: RwSignal<String>,
    audience: RwSignal<String>,
}

impl FilmForm {
    fn new() -> Self {
        Self {
            title: RwSignal::new(String::new()),
            year: RwSignal::new(String::new()),
            genres: RwSignal::new(String::new()),
            runtime: RwSignal::new(String::new()),
            director: RwSignal::new(String::new()),
            rating: RwSignal::new("0".into()),
            synopsis: RwSignal::new(String::new()),
            audience: RwSignal::new(String::new()),
        }
    }

    fn fill(&self, movie: &Movie) {
        self.title.set(movie.title.clone());
        self.year.set(movie.release_year.to_string());
        self.genres.set(movie.genres.join(", "));
        self.runtime.set(movie.runtime_minutes.to_string());
        self.director.set(movie.director.clone());
        self.rating.set(movie.rating.to_string());
        self.synopsis.set(movie.synopsis.clone());
        self.audience.set(format!("{:.1}", movie.audience_rating));
    }

    /// The film as typed; the service validates it.
    fn movie(&self, id: i64) -> Result<Movie, String> {
        let number = |text: String, what: &str| -> Result<i32, String> {
            let text = text.trim().to_owned();
            if text.is_empty() {
                Ok(0)
            } else {
                text.parse().map_err(|_| format!("{what} must be a whole number"))
            }
        };
        let audience = self.audience.get_untracked();
        Ok(Movie {
            id,
            title: self.title.get_untracked(),
            release_year: number(self.year.get_untracked(), "Year")?,
            genres: self
                .genres
                .get_untracked()
                .split(',')
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .map(str::to_owned)
                .collect(),
            runtime_minutes: number(self.runtime.get_untracked(), "Runtime")?,
            director: self.director.get_untracked(),
            rating: self.rating.get_untracked().parse().unwrap_or(0),
            synopsis: self.synopsis.get_untracked(),
            audience_rating: if audience.trim().is_empty() {
                0.0
            } else {
                audience
                    .trim()
                    .parse()
                    .map_err(|_| "Audience rating must be a number from 0 to 10".to_owned())?
            },
            ..Default::default()
        })
    }
}

#[component]
fn FilmFields(form: FilmForm) -> impl IntoView {
    let text = |label: &'static str, name: &'static str, signal: RwSignal<String>| {
        view! {
            <label>{label}<input type="text" name=name prop:value=move || signal.get()
                on:input=move |ev| signal.set(event_target_value(&ev))/></label>
        }
    };
    view! {
        {text("Title", "title", form.title)}
        {text("Year", "year", form.year)}
        {text("Genres (comma-separated)", "genres", form.genres)}
        {text("Runtime (minutes)", "runtime", form.runtime)}
        {text("Director", "director", form.director)}
        <label>"Rating"
            <select name="rating" prop:value=move || form.rating.get() on:change=move |ev| form.rating.set(event_target_value(&ev))>
                <option value="0">"Not rated"</option>
                <option value="1">"G"</option>
                <option value="2">"PG"</option>
                <option value="3">"PG-13"</option>
                <option value="4">"R"</option>
                <option value="5">"NC-17"</option>
            </select>
        </label>
        {text("Audience rating (0–10)", "audience", form.audience)}
        <label>"Synopsis"<textarea name="synopsis" rows="3" prop:value=move || form.synopsis.get()
            on:input=move |ev| form.synopsis.set(event_target_value(&ev))></textarea></label>
    }
}

type Outcome = RwSignal<Option<Result<String, String>>>;

fn show(outcome: Outcome) -> impl IntoView {
    move || {
        outcome.get().map(|result| match result {
            Ok(text) => view! { <p class="status info" role="status" data-outcome="ok">{text}</p> }
                .into_any(),
            Err(text) => view! { <ErrorMessage message=text/> }.into_any(),
        })
    }
}

/// The staff page.
#[component]
pub(crate) fn Staff() -> impl IntoView {
    let session = expect_context::<SessionState>().0;
    view! {
        <h1>"Staff"</h1>
        <Show
            when=move || session.get().is_some_and(|s| s.staff)
            fallback=|| view! { <p class="status error" role="alert">"Staff only: "<a href="/account">"sign in"</a>" with a staff account."</p> }
        >
            <div class="account-forms">
                <AddFilm/>
                <EditFilm/>
                <SetStock/>
            </div>
            <Activity/>
        </Show>
    }
}

#[component]
fn AddFilm() -> impl IntoView {
    let api = expect_context::<Api>();
    let form = FilmForm::new();
    let outcome: Outcome = RwSignal::new(None);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let api = api.clone();
        let movie = match form.movie(0) {
            Ok(movie) => movie,
            Err(message) => return outcome.set(Some(Err(message))),
        };
        spawn_local(async move {
            outcome.set(Some(match api.create_movie(movie).await {
                Ok(created) => Ok(format!("Added “{}” as film {}.", created.title, created.id)),
                Err(error) => Err(error.message),
            }));
        });
    };
    view! {
        <form aria-label="Add a film" on:submit=submit>
            <h2>"Add a film"</h2>
            <FilmFields form/>
            <button type="submit" name="add-film">"Add film"</button>
            {show(outcome)}
        </form>
    }
}

#[component]
fn EditFilm() -> impl IntoView {
    let api = expect_context::<Api>();
    let form = FilmForm::new();
    let id = RwSignal::new(String::new());
    let loaded = RwSignal::new(None::<i64>);
    let outcome: Outcome = RwSignal::new(None);
    let load = {
        let api = api.clone();
        move |_| {
            let api = api.clone();
            let Ok(movie_id) = id.get_untracked().trim().parse::<i64>() else {
                return outcome.set(Some(Err("Film id must be a number".into())));
            };
            spawn_local(async move {
                match api.movie(movie_id).await {
                    Ok(movie) => {
                        form.fill(&movie);
                        loaded.set(Some(movie.id));
                        outcome.set(None);
                    }
                    Err(error) => outcome.set(Some(Err(error.message))),
                }
            });
        }
    };
    let save = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some(movie_id) = loaded.get_untracked() else { return };
        let movie = match form.movie(movie_id) {
            Ok(movie) => movie,
            Err(message) => return outcome.set(Some(Err(message))),
        };
        let api = api.clone();
        spawn_local(async move {
            let fields = [
                "title",
                "release_year",
                "genres",
                "runtime_minutes",
                "director",
                "rating",
                "synopsis",
                "audience_rating",
            ];
            outcome.set(Some(match api.update_movie(movie, &fields).await {
                Ok(saved) => Ok(format!("Saved “{}”.", saved.title)),
                Err(error) => Err(error.message),
            }));
        });
    };
    view! {
        <form aria-label="Edit a film" on:submit=save>
            <h2>"Edit a film"</h2>
            <label>"Film id"<input type="number" name="edit-id" prop:value=move || id.get() on:input=move |ev| id.set(event_target_value(&ev))/></label>
            <button type="button" class="secondary" name="load-film" on:click=load>"Load"</button>
            <Show when=move || loaded.get().is_some()>
                <FilmFields form/>
                <button type="submit" name="save-film">"Save changes"</button>
            </Show>
            {show(outcome)}
        </form>
    }
}

#[component]
fn SetStock() -> impl IntoView {
    let api = expect_context::<Api>();
    let id = RwSignal::new(String::new());
    let copies = RwSignal::new(String::new());
    let rent = RwSignal::new(String::new());
    let buy = RwSignal::new(String::new());
    let currency = RwSignal::new("EUR".to_owned());
    let outcome: Outcome = RwSignal::new(None);
    let load = {
        let api = api.clone();
        move |_| {
            let api = api.clone();
            let Ok(movie_id) = id.get_untracked().trim().parse::<i64>() else {
                return outcome.set(Some(Err("Film id must be a number".into())));
            };
            spawn_local(async move {
                match api.availability(movie_id).await {
                    Ok(a) => {
                        copies.set(a.copies_owned.to_string());
                        let plain = |m: Option<&stock::Money>| {
                            m.map(|m| {
                                money::format(Some(m))
                                    .split(' ')
                                    .next()
                                    .unwrap_or_default()
                                    .to_owned()
                            })
                            .unwrap_or_default()
                        };
                        rent.set(plain(a.rental_price_per_day.as_ref()));
                        buy.set(plain(a.purchase_price.as_ref()));
                        if let Some(price) = a.rental_price_per_day {
                            currency.set(price.currency_code);
                        }
                        outcome.set(None);
                    }
                    Err(error) => outcome.set(Some(Err(error.message))),
                }
            });
        }
    };
    let save = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let code = currency.get_untracked().trim().to_uppercase();
        let parsed = (|| -> Result<stock::SetInventoryRequest, String> {
            Ok(stock::SetInventoryRequest {
                movie_id: id
                    .get_untracked()
                    .trim()
                    .parse()
                    .map_err(|_| "Film id must be a number".to_owned())?,
                copies_owned: copies
                    .get_untracked()
                    .trim()
                    .parse()
                    .map_err(|_| "Copies must be a whole number".to_owned())?,
                rental_price_per_day: Some(stock::Money {
                    currency_code: code.clone(),
                    minor_units: money::parse_minor(&rent.get_untracked(), &code)?,
                }),
                purchase_price: Some(stock::Money {
                    currency_code: code.clone(),
                    minor_units: money::parse_minor(&buy.get_untracked(), &code)?,
                }),
            })
        })();
        let request = match parsed {
            Ok(request) => request,
            Err(message) => return outcome.set(Some(Err(message))),
        };
        let api = api.clone();
        spawn_local(async move {
            outcome.set(Some(match api.set_inventory(request).await {
                Ok(a) => Ok(format!(
                    "Film {}: {} of {} available now.",
                    a.movie_id, a.copies_available, a.copies_owned
                )),
                Err(error) => Err(error.message),
            }));
        });
    };
    let field = |label: &'static str, name: &'static str, signal: RwSignal<String>| {
        view! { <label>{label}<input type="text" name=name prop:value=move || signal.get() on:input=move |ev| signal.set(event_target_value(&ev))/></label> }
    };
    view! {
        <form aria-label="Stock and prices" on:submit=save>
            <h2>"Stock and prices"</h2>
            {field("Film id", "stock-id", id)}
            <button type="button" class="secondary" name="load-stock" on:click=load>"Load"</button>
            {field("Copies owned", "copies", copies)}
            {field("Rent per day (e.g. 2.99)", "rent-price", rent)}
            {field("Purchase price", "buy-price", buy)}
            {field("Currency", "currency", currency)}
            <button type="submit" name="save-stock">"Save stock"</button>
            {show(outcome)}
        </form>
    }
}

/// The shop's stock changes as they commit: rentals, returns, sales and stock edits, from any
/// desk or browser. (A second stream beside the page's badge stream: two of six connections.)
#[component]
fn Activity() -> impl IntoView {
    let api = expect_context::<Api>();
    let events = RwSignal::new(Vec::<(String, stock::Availability)>::new());
    let failed = RwSignal::new(None::<String>);
    let (stop, stopped) = futures::channel::oneshot::channel::<()>();
    on_cleanup(move || {
        let _ = stop.send(());
    });
    spawn_local(async move {
        use futures::FutureExt;
        let work = async move {
            let mut stream = match api.watch(Vec::new(), Vec::new()).await {
                Ok(stream) => stream,
                Err(error) => return failed.set(Some(error.message)),
            };
            loop {
                match stream.message().await {
                    Ok(Some(message)) if !message.snapshot => {
                        let at = js_sys::Date::new_0()
                            .to_locale_time_string("en-GB")
                            .as_string()
                            .unwrap_or_default();
                        events.update(|list| {
                            for availability in message.availabilities {
                                list.insert(0, (at.clone(), availability));
                            }
                            list.truncate(20);
                        });
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => {
                        return failed.set(Some("Live activity stopped: the stock service went away. Reload to reconnect.".into()));
                    }
                }
            }
        };
        futures::select! {
            () = work.fuse() => {},
            _ = stopped.fuse() => {},
        }
    });
    view! {
        <section aria-label="Live activity">
            <h2>"Live activity"</h2>
            {move || failed.get().map(|message| view! { <ErrorMessage message/> })}
            <ol class="activity">
                {move || events.get().into_iter().map(|(at, a)| view! {
                    <li>{format!("{at} film {}: {} of {} available", a.movie_id, a.copies_available, a.copies_owned)}</li>
                }).collect_view()}
            </ol>
            {move || events.with(|list| list.is_empty()).then(|| view! { <p class="meta">"Waiting for the next rental, return or sale…"</p> })}
        </section>
    }
}
