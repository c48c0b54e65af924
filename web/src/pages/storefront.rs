//! The store front: search as you type, filters and order in the URL, a grid of films with live
//! availability badges, and paging.

use futures::future::{AbortHandle, Abortable};
use leptos::{prelude::*, task::spawn_local};
use leptos_router::{
    NavigateOptions,
    hooks::{use_location, use_navigate},
};
use videostore_display::{facts, query::StorefrontQuery};
use videostore_proto::{aggregator::ListStorefrontResponse, catalogue::Genre};

use crate::{
    api::Api,
    components::{
        badge::AvailabilityBadge,
        status::{ErrorMessage, Load, Loading},
    },
    live::Live,
};

const PAGE_SIZE: i32 = 24;
const DEBOUNCE_MS: u32 = 250;

/// The store front page.
#[component]
pub(crate) fn Storefront() -> impl IntoView {
    let api = expect_context::<Api>();
    let live = expect_context::<Live>();
    let location = use_location();
    let query = Memo::new(move |_| StorefrontQuery::parse(&location.search.get()));
    let results = RwSignal::new(Load::<ListStorefrontResponse>::Loading);
    let genres = RwSignal::new(Vec::<Genre>::new());

    {
        let api = api.clone();
        spawn_local(async move {
            if let Ok(list) = api.genres().await {
                genres.set(list);
            }
        });
    }

    // Load the page whenever the URL's query changes; a newer query aborts the older call, and
    // so does leaving the page.
    let in_flight = StoredValue::new(None::<AbortHandle>);
    on_cleanup(move || {
        if let Some(Some(call)) = in_flight.try_get_value() {
            call.abort();
        }
    });
    Effect::new(move |_| {
        let query = query.get();
        let api = api.clone();
        if let Some(previous) = in_flight.get_value() {
            previous.abort();
        }
        let (handle, registration) = AbortHandle::new_pair();
        in_flight.set_value(Some(handle));
        results.set(Load::Loading);
        spawn_local(async move {
            let call = Abortable::new(
                async move { api.list_storefront(&query, PAGE_SIZE).await },
                registration,
            );
            match call.await {
                Ok(Ok(page)) => {
                    live.watch(
                        page.items
                            .iter()
                            .filter_map(|item| item.movie.as_ref().map(|m| m.id))
                            .collect(),
                    );
                    results.set(Load::Ready(page));
                }
                Ok(Err(error)) => results.set(Load::Failed(error.message)),
                Err(_aborted) => {}
            }
        });
    });

    let navigate = use_navigate();
    let go = move |next: StorefrontQuery, replace: bool| {
        navigate(
            &format!("/{}", next.to_query_string()),
            NavigateOptions { replace, ..Default::default() },
        );
    };

    // The search box updates the URL after a pause in typing. The pending update is dropped if
    // the page goes away first, and the box follows the URL on back/forward.
    let typed = RwSignal::new(query.get_untracked().text);
    Effect::new(move |_| {
        let text = query.get().text;
        if typed.get_untracked() != text {
            typed.set(text);
        }
    });
    let typing = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    {
        let typing = typing.clone();
        on_cleanup(move || {
            typing.store(u64::MAX, std::sync::atomic::Ordering::SeqCst);
        });
    }
    let on_search = {
        let go = go.clone();
        move |text: String| {
            use std::sync::atomic::Ordering;
            typed.set(text.clone());
            let generation = typing.fetch_add(1, Ordering::SeqCst).wrapping_add(1);
            if generation == u64::MAX {
                return; // The page is gone.
            }
            let go = go.clone();
            let typing = typing.clone();
            spawn_local(async move {
                gloo_timers::future::TimeoutFuture::new(DEBOUNCE_MS).await;
                if typing.load(Ordering::SeqCst) != generation {
                    return; // More typing since, or the page is gone.
                }
                if let Some(current) = query.try_get_untracked() {
                    go(StorefrontQuery { text, ..current }.first_page(), true);
                }
            });
        }
    };

    let set_filter = {
        let go = go.clone();
        move |change: Box<dyn Fn(&mut StorefrontQuery)>| {
            let mut next = query.get_untracked().first_page();
            change(&mut next);
            go(next, false);
        }
    };
    let set_genre = {
        let set_filter = set_filter.clone();
        move |value: String| set_filter(Box::new(move |q| q.genre = value.clone()))
    };
    let set_from = {
        let set_filter = set_filter.clone();
        move |value: String| set_filter(Box::new(move |q| q.from = value.parse().unwrap_or(0)))
    };
    let set_to = {
        let set_filter = set_filter.clone();
        move |value: String| set_filter(Box::new(move |q| q.to = value.parse().unwrap_or(0)))
    };
    let set_order = {
        let set_filter = set_filter.clone();
        move |value: String| {
            set_filter(Box::new(move |q| {
                let (order, descending) = match value.as_str() {
                    "year-desc" => ("year", true),
                    "year" => ("year", false),
                    "rating" => ("rating", true),
                    "title-desc" => ("title", true),
                    _ => ("title", false),
                };
                q.order = order.to_owned();
                q.descending = descending;
            }))
        }
    };
    let order_value = move || {
        let q = query.get();
        match (q.order.as_str(), q.descending) {
            ("year", true) => "year-desc",
            ("year", false) => "year",
            ("rating", _) => "rating",
            ("title" | "", true) => "title-desc",
            _ => "title",
        }
    };

    view! {
        <h1>"Films"</h1>
        <form class="filters" role="search" on:submit=|ev| ev.prevent_default()>
            <label>
                "Search titles"
                <input
                    type="search"
                    name="q"
                    placeholder="Title…"
                    prop:value=move || typed.get()
                    on:input=move |ev| on_search(event_target_value(&ev))
                />
            </label>
            <label>
                "Genre"
                <select name="genre" on:change=move |ev| set_genre(event_target_value(&ev)) prop:value=move || query.get().genre>
                    <option value="">"All genres"</option>
                    {move || genres.get().into_iter().map(|genre| {
                        let selected = query.get_untracked().genre == genre.name;
                        view! { <option value=genre.name.clone() selected=selected>{format!("{} ({})", genre.name, genre.movie_count)}</option> }
                    }).collect_view()}
                </select>
            </label>
            <label>
                "From year"
                <input type="number" name="from" min="1888" max="2100"
                    prop:value=move || { let y = query.get().from; if y > 0 { y.to_string() } else { String::new() } }
                    on:change=move |ev| set_from(event_target_value(&ev)) />
            </label>
            <label>
                "To year"
                <input type="number" name="to" min="1888" max="2100"
                    prop:value=move || { let y = query.get().to; if y > 0 { y.to_string() } else { String::new() } }
                    on:change=move |ev| set_to(event_target_value(&ev)) />
            </label>
            <label>
                "Order"
                <select name="order" on:change=move |ev| set_order(event_target_value(&ev)) prop:value=order_value>
                    <option value="title">"Title A–Z"</option>
                    <option value="title-desc">"Title Z–A"</option>
                    <option value="year-desc">"Newest first"</option>
                    <option value="year">"Oldest first"</option>
                    <option value="rating">"Best rated"</option>
                </select>
            </label>
        </form>
        {move || match results.get() {
            Load::Loading => view! { <Loading what="films"/> }.into_any(),
            Load::Failed(message) => view! { <ErrorMessage message/> }.into_any(),
            Load::Ready(page) => {
                let count = page.total_size;
                let stock_down = page.items.iter().any(|item| item.stock.as_ref().is_none_or(|s| !s.known));
                let next = (!page.next_page_token.is_empty())
                    .then(|| StorefrontQuery { page: page.next_page_token.clone(), ..query.get_untracked() }.to_query_string());
                let first = (!query.get_untracked().page.is_empty())
                    .then(|| query.get_untracked().first_page().to_query_string());
                view! {
                    <p class="meta" role="status">{format!("{count} films")}</p>
                    {stock_down.then(|| view! { <p class="status error" role="alert">"Stock service unavailable: availability is unknown right now."</p> })}
                    <ul class="grid" aria-label="Films">
                        {page.items.into_iter().filter_map(|item| {
                            let movie = item.movie?;
                            let initial = item.stock.and_then(|s| s.availability);
                            let href = format!("/movies/{}", movie.id);
                            Some(view! {
                                <li class="card" data-movie-id=movie.id>
                                    <h2><a href=href>{movie.title.clone()}</a></h2>
                                    <span class="meta">{facts::card(&movie)}</span>
                                    {facts::stars(movie.audience_rating).map(|stars| view! { <span class="meta">{stars}</span> })}
                                    <AvailabilityBadge movie_id=movie.id initial/>
                                </li>
                            })
                        }).collect_view()}
                    </ul>
                    <nav class="pager" aria-label="Pages">
                        {first.map(|href| view! { <a href=format!("/{href}")>"« First page"</a> })}
                        {next.map(|href| view! { <a href=format!("/{href}") rel="next">"Next page »"</a> })}
                    </nav>
                }.into_any()
            }
        }}
    }
}
