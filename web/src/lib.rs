//! The video store in the browser: a Leptos client-side app that calls the catalogue and stock
//! services directly over gRPC-Web, and the aggregator for combined views.
//!
//! # Layout
//! - [`App`]: the router and the shared state (API clients, session, live stock).
//! - `api`: every call the app makes, and errors as human messages.
//! - `live`: one live availability stream for all the films on screen.
//! - `pages/`: store front, film page, account, my rentals, staff.
//! - `components/`: the availability badge and status messages.

// `#[component]` makes public prop structs for crate-private components.
#![allow(unreachable_pub)]

mod api;
mod components;
mod live;
mod pages;

use leptos::prelude::*;
use leptos_router::{
    components::{Route, Router, Routes},
    path,
};

use crate::{
    api::{Api, Endpoints, Session},
    live::{Live, LiveState},
};

/// Who is signed in, shared by every page.
#[derive(Clone, Copy)]
pub(crate) struct SessionState(pub(crate) RwSignal<Option<Session>>);

impl SessionState {
    /// Keeps `session` in the tab's storage, the API clients and the page state alike.
    pub(crate) fn set(&self, api: &Api, session: Option<Session>) {
        match &session {
            Some(session) => session.save(),
            None => Session::clear(),
        }
        api.set_session(session.clone());
        self.0.set(session);
    }
}

/// The app: header, routes and shared state.
#[component]
pub fn App() -> impl IntoView {
    let api = Api::new(Endpoints::from_page());
    let session = SessionState(RwSignal::new(api.current_session()));
    api.watch_session(session.0);
    let live = Live::start(api.clone());
    provide_context(api);
    provide_context(session);
    provide_context(live);
    view! {
        <Router>
            <Header/>
            <main>
                <Routes fallback=|| view! { <p class="status error">"There is no such page."</p> }>
                    <Route path=path!("/") view=pages::storefront::Storefront/>
                    <Route path=path!("/movies/:id") view=pages::movie::MoviePage/>
                    <Route path=path!("/account") view=pages::account::Account/>
                    <Route path=path!("/confirm") view=pages::account::Confirm/>
                    <Route path=path!("/rentals") view=pages::rentals::Rentals/>
                    <Route path=path!("/staff") view=pages::staff::Staff/>
                </Routes>
            </main>
        </Router>
    }
}

/// The top bar: brand, navigation, who is signed in, and the live connection state.
#[component]
fn Header() -> impl IntoView {
    let session = expect_context::<SessionState>().0;
    let live = expect_context::<Live>();
    let live_text = move || match live.state.get() {
        LiveState::Idle => "",
        LiveState::Connecting => "connecting…",
        LiveState::Live => "● live",
        LiveState::Reconnecting => "reconnecting…",
    };
    view! {
        <header class="top">
            <a class="brand" href="/">"Video Store"</a>
            <nav aria-label="Main">
                <a href="/">"Films"</a>
                <a href="/rentals">"My rentals"</a>
                {move || session.get().is_some_and(|s| s.staff).then(|| view! { <a href="/staff">"Staff"</a> })}
                <a href="/account">
                    {move || match session.get() {
                        Some(s) => format!("{} (account)", s.name),
                        None => "Sign in".to_owned(),
                    }}
                </a>
            </nav>
            <span
                class=move || if live.state.get() == LiveState::Reconnecting { "live reconnecting" } else { "live" }
                role="status"
                data-live=move || format!("{:?}", live.state.get()).to_lowercase()
            >
                {live_text}
            </span>
        </header>
    }
}
