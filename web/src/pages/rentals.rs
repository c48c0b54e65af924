//! My rentals: open ones first with due dates (overdue marked), returned ones with any late fee,
//! and a return button.

use std::collections::HashMap;

use leptos::{prelude::*, task::spawn_local};
use videostore_display::{
    money,
    time::{self, DueState},
};
use videostore_proto::stock::{Rental, RentalState};

use crate::{
    SessionState,
    api::Api,
    components::status::{ErrorMessage, Load, Loading},
};

fn now_seconds() -> i64 {
    (js_sys::Date::now() / 1000.0) as i64
}

/// The rentals page.
#[component]
pub(crate) fn Rentals() -> impl IntoView {
    let api = expect_context::<Api>();
    let session = expect_context::<SessionState>().0;
    let rentals = RwSignal::new(Load::<Vec<Rental>>::Loading);
    let titles = RwSignal::new(HashMap::<i64, String>::new());
    let notice = RwSignal::new(None::<Result<String, String>>);
    let returning = RwSignal::new(false);

    let load = {
        let api = api.clone();
        move || {
            let api = api.clone();
            if session.get_untracked().is_none() {
                rentals.set(Load::Failed("Signed out: sign in to see your rentals.".into()));
                return;
            }
            spawn_local(async move {
                match api.my_rentals().await {
                    Ok(list) => {
                        let ids: Vec<i64> = {
                            let mut ids: Vec<i64> = list.iter().map(|r| r.movie_id).collect();
                            ids.sort_unstable();
                            ids.dedup();
                            ids
                        };
                        rentals.set(Load::Ready(list));
                        if let Ok(movies) = api.movies(ids).await {
                            titles.set(movies.into_iter().map(|m| (m.id, m.title)).collect());
                        }
                    }
                    Err(error) => rentals.set(Load::Failed(error.message)),
                }
            });
        }
    };
    {
        let load = load.clone();
        Effect::new(move |_| {
            session.track();
            load();
        });
    }

    let return_rental = move |rental_id: i64| {
        if returning.get_untracked() {
            return;
        }
        returning.set(true);
        let api = api.clone();
        let load = load.clone();
        spawn_local(async move {
            match api.return_rental(rental_id).await {
                Ok(rental) => {
                    let fee = rental.late_fee.as_ref().filter(|fee| fee.minor_units > 0);
                    notice.set(Some(Ok(match fee {
                        Some(fee) => format!(
                            "Returned late: a late fee of {} was charged.",
                            money::format(Some(fee))
                        ),
                        None => "Returned on time. Thank you!".to_owned(),
                    })));
                    load();
                }
                Err(error) => notice.set(Some(Err(error.message))),
            }
            returning.set(false);
        });
    };

    view! {
        <h1>"My rentals"</h1>
        {move || notice.get().map(|n| match n {
            Ok(text) => view! { <p class="status info" role="status" data-outcome="ok">{text}</p> }.into_any(),
            Err(text) => view! { <ErrorMessage message=text/> }.into_any(),
        })}
        {move || match rentals.get() {
            Load::Loading => view! { <Loading what="your rentals"/> }.into_any(),
            Load::Failed(message) => view! { <ErrorMessage message/> }.into_any(),
            Load::Ready(list) if list.is_empty() => view! { <p>"No rentals yet. "<a href="/">"Find a film"</a>"."</p> }.into_any(),
            Load::Ready(list) => {
                let now = now_seconds();
                let return_rental = return_rental.clone();
                view! {
                    <table class="rentals">
                        <thead><tr><th>"Film"</th><th>"Rented"</th><th>"Due"</th><th>"Price"</th><th>"State"</th><th>"Late fee"</th><th><span class="visually-hidden">"Action"</span></th></tr></thead>
                        <tbody>
                            {list.into_iter().map(|rental| {
                                let open = rental.state == RentalState::Open as i32;
                                let due = rental.due_at.unwrap_or_default();
                                let state = DueState::of(&due, now);
                                let overdue = open && state.is_overdue();
                                let movie_id = rental.movie_id;
                                let id = rental.id;
                                let return_rental = return_rental.clone();
                                view! {
                                    <tr class=if overdue { "overdue" } else { "" } data-rental-id=id>
                                        <td><a href=format!("/movies/{movie_id}")>{move || titles.with(|t| t.get(&movie_id).cloned()).unwrap_or_else(|| format!("Film {movie_id}"))}</a></td>
                                        <td>{time::date(rental.rented_at.as_ref())}</td>
                                        <td>{format!("{} ({})", time::date(Some(&due)), if open { state.describe() } else { "closed".to_owned() })}</td>
                                        <td>{money::format(rental.price.as_ref())}</td>
                                        <td>{if overdue { "Overdue".to_owned() } else if open { "Open".to_owned() } else { format!("Returned {}", time::date(rental.returned_at.as_ref())) }}</td>
                                        <td>{rental.late_fee.as_ref().filter(|f| f.minor_units > 0).map(|f| money::format(Some(f))).unwrap_or_else(|| "—".into())}</td>
                                        <td>{open.then(|| view! {
                                            <button name="return" disabled=move || returning.get()
                                                aria-label=move || format!("Return {}", titles.with(|t| t.get(&movie_id).cloned()).unwrap_or_else(|| format!("film {movie_id}")))
                                                on:click=move |_| return_rental(id)>"Return"</button>
                                        })}</td>
                                    </tr>
                                }
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any()
            }
        }}
    }
}
