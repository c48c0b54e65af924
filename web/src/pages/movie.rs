//! A film page (deep link `/movies/{id}`): details, prices, related films, a live availability
//! badge, and renting or buying with the price shown before confirming.

use leptos::{prelude::*, task::spawn_local};
use leptos_router::hooks::use_params_map;
use videostore_display::{facts, money, time};
use videostore_proto::{aggregator::MoviePage as Page, stock::Money};

use crate::{
    SessionState,
    api::Api,
    components::{
        badge::AvailabilityBadge,
        status::{ErrorMessage, Load, Loading},
    },
    live::Live,
};

/// What the customer is about to confirm.
#[derive(Debug, Clone, PartialEq)]
enum Pending {
    Nothing,
    Rent { days: i32, total: Money },
    Buy { price: Money },
}

/// The film page.
#[component]
pub(crate) fn MoviePage() -> impl IntoView {
    let api = expect_context::<Api>();
    let live = expect_context::<Live>();
    let params = use_params_map();
    let movie_id =
        Memo::new(move |_| params.with(|p| p.get("id").and_then(|id| id.parse::<i64>().ok())));
    let page = RwSignal::new(Load::<Page>::Loading);

    {
        let api = api.clone();
        Effect::new(move |_| {
            let Some(id) = movie_id.get() else {
                page.set(Load::Failed("That is not a film address.".into()));
                return;
            };
            page.set(Load::Loading);
            let api = api.clone();
            spawn_local(async move {
                let loaded = api.movie_page(id).await;
                // A newer film was asked for meanwhile (a related-film link): drop this one.
                if movie_id.try_get_untracked().flatten() != Some(id) {
                    return;
                }
                match loaded {
                    Ok(loaded) => {
                        let mut ids = vec![id];
                        ids.extend(loaded.related.iter().map(|m| m.id));
                        live.watch(ids);
                        page.set(Load::Ready(loaded));
                    }
                    Err(error) => page.set(Load::Failed(error.message)),
                }
            });
        });
    }

    view! {
        {move || match page.get() {
            Load::Loading => view! { <Loading what="the film"/> }.into_any(),
            Load::Failed(message) => view! { <ErrorMessage message/> }.into_any(),
            Load::Ready(loaded) => view! { <Details page=loaded/> }.into_any(),
        }}
    }
}

#[component]
fn Details(page: Page) -> impl IntoView {
    let api = expect_context::<Api>();
    let session = expect_context::<SessionState>().0;
    let live = expect_context::<Live>();
    let movie = page.movie.unwrap_or_default();
    let id = movie.id;
    let stock = page.stock.unwrap_or_default();
    let initial = stock.availability.clone();
    let current = {
        let initial = initial.clone();
        move || live.get(id).or_else(|| initial.clone())
    };
    // The days field as typed; the number is read from it (never rewritten while typing).
    let days_text = RwSignal::new("3".to_owned());
    let days = Memo::new(move |_| {
        days_text.with(|text| text.trim().parse::<i32>().ok().filter(|d| (1..=90).contains(d)))
    });
    let pending = RwSignal::new(Pending::Nothing);
    let outcome = RwSignal::new(None::<Result<String, String>>);
    let busy = RwSignal::new(false);

    let rent_price = {
        let current = current.clone();
        move || current().and_then(|a| a.rental_price_per_day)
    };
    let buy_price = {
        let current = current.clone();
        move || current().and_then(|a| a.purchase_price)
    };
    let available = {
        let current = current.clone();
        move || current().is_some_and(|a| a.stocked && a.copies_available > 0)
    };

    let confirm = {
        let api = api.clone();
        move |_| {
            let action = pending.get_untracked();
            if action == Pending::Nothing || busy.get_untracked() {
                return; // A second click on Confirm.
            }
            pending.set(Pending::Nothing);
            busy.set(true);
            outcome.set(None);
            let api = api.clone();
            spawn_local(async move {
                let request_id = uuid::Uuid::new_v4().to_string();
                let result = match action {
                    Pending::Rent { days, .. } => {
                        api.rent(id, days, request_id).await.map(|rental| {
                            format!(
                                "Rented for {} days ({}). Due back {}.",
                                rental.days,
                                money::format(rental.price.as_ref()),
                                time::date(rental.due_at.as_ref())
                            )
                        })
                    }
                    Pending::Buy { .. } => api.buy(id, request_id).await.map(|purchase| {
                        format!(
                            "Bought for {}. Enjoy the film!",
                            money::format(purchase.price.as_ref())
                        )
                    }),
                    Pending::Nothing => return,
                };
                busy.set(false);
                outcome.set(Some(result.map_err(|error| error.message)));
            });
        }
    };

    let related = page.related;
    view! {
        <article class="movie">
            <div>
                <h1>{movie.title.clone()}</h1>
                <p class="meta">
                    {facts::full(&movie)}
                </p>
                {facts::genres(&movie.genres).map(|genres| view! { <p class="meta">{genres}</p> })}
                {(!movie.director.is_empty()).then(|| view! { <p>{format!("Directed by {}", movie.director)}</p> })}
                <p>{movie.synopsis.clone()}</p>
                <h2>"Related films"</h2>
                <ul class="grid" aria-label="Related films">
                    {related.into_iter().map(|film| view! {
                        <li class="card" data-movie-id=film.id>
                            <h3><a href=format!("/movies/{}", film.id)>{film.title.clone()}</a></h3>
                            <span class="meta">{facts::joined([Some(film.release_year.to_string()), facts::stars(film.audience_rating)])}</span>
                            <AvailabilityBadge movie_id=film.id initial=None/>
                        </li>
                    }).collect_view()}
                </ul>
            </div>
            <aside aria-label="Rent or buy">
                <AvailabilityBadge movie_id=id initial=initial.clone() announce=true/>
                {
                    let current = current.clone();
                    move || current().is_none().then(|| view! { <p class="status error" role="alert">"Stock service unavailable: availability and prices are unknown right now."</p> })
                }
                <p>{
                    let rent_price = rent_price.clone();
                    move || format!("Rent: {} per day", money::format(rent_price().as_ref()))
                }</p>
                <p>{
                    let buy_price = buy_price.clone();
                    move || format!("Buy: {}", money::format(buy_price().as_ref()))
                }</p>
                <Show
                    when=move || session.get().is_some()
                    fallback=|| view! { <p class="status info">"Signed out: "<a href="/account">"sign in"</a>" to rent or buy."</p> }
                >
                    <label>
                        "Days"
                        <input type="number" name="days" min="1" max="90"
                            aria-invalid=move || days.get().is_none().then_some("true")
                            prop:value=move || days_text.get()
                            on:input=move |ev| days_text.set(event_target_value(&ev)) />
                    </label>
                    <button
                        name="rent"
                        disabled={
                            let available = available.clone();
                            move || busy.get() || !available() || days.get().is_none()
                        }
                        on:click={
                            let rent_price = rent_price.clone();
                            move |_| {
                                if let Some(price) = rent_price()
                                    && let Some(days) = days.get_untracked()
                                {
                                    pending.set(Pending::Rent { days, total: money::times(&price, days) });
                                }
                            }
                        }
                    >
                        {
                            let rent_price = rent_price.clone();
                            move || match days.get() {
                                Some(days) => format!("Rent for {days} days — {}", rent_price().map(|p| money::format(Some(&money::times(&p, days)))).unwrap_or_default()),
                                None => "Rent: choose 1 to 90 days".to_owned(),
                            }
                        }
                    </button>
                    <button
                        name="buy"
                        class="secondary"
                        disabled={
                            let available = available.clone();
                            move || busy.get() || !available()
                        }
                        on:click={
                            let buy_price = buy_price.clone();
                            move |_| {
                                if let Some(price) = buy_price() {
                                    pending.set(Pending::Buy { price });
                                }
                            }
                        }
                    >
                        {
                            let buy_price = buy_price.clone();
                            move || format!("Buy — {}", money::format(buy_price().as_ref()))
                        }
                    </button>
                </Show>
                {
                    let confirm = confirm.clone();
                    move || {
                        let question = match pending.get() {
                            Pending::Nothing => return None,
                            Pending::Rent { days, total } => format!("Rent for {days} days for {}?", money::format(Some(&total))),
                            Pending::Buy { price } => format!("Buy for {}?", money::format(Some(&price))),
                        };
                        let confirm = confirm.clone();
                        Some(view! {
                            <div role="dialog" aria-label="Confirm" class="status info">
                                <p>{question}</p>
                                <button name="confirm" on:click=confirm>"Confirm"</button>
                                " "
                                <button name="cancel" class="secondary" on:click=move |_| pending.set(Pending::Nothing)>"Cancel"</button>
                            </div>
                        })
                    }
                }
                {move || busy.get().then(|| view! { <p class="status info" role="status" aria-busy="true">"Working…"</p> })}
                {move || outcome.get().map(|result| match result {
                    Ok(message) => view! { <p class="status info" role="status" data-outcome="ok">{message}</p> }.into_any(),
                    Err(message) => view! { <p class="status error" role="alert" data-outcome="error">{message}</p> }.into_any(),
                })}
            </aside>
        </article>
    }
}
