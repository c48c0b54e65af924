//! Register, confirm, sign in and sign out. The token is kept for this browser tab (session
//! storage).

use leptos::{prelude::*, task::spawn_local};

use crate::{SessionState, api::Api, components::status::ErrorMessage};

/// The account page.
#[component]
pub(crate) fn Account() -> impl IntoView {
    let api = expect_context::<Api>();
    let state = expect_context::<SessionState>();
    let session = state.0;
    let message = RwSignal::new(None::<Result<String, String>>);
    let busy = RwSignal::new(false);

    let email = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let new_name = RwSignal::new(String::new());
    let new_email = RwSignal::new(String::new());
    let new_password = RwSignal::new(String::new());

    let sign_in = {
        let api = api.clone();
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            busy.set(true);
            let api = api.clone();
            spawn_local(async move {
                match api.sign_in(email.get_untracked(), password.get_untracked()).await {
                    Ok(signed_in) => {
                        message.set(Some(Ok(format!("Signed in as {}.", signed_in.name))));
                        state.set(&api, Some(signed_in));
                    }
                    Err(error) => message.set(Some(Err(error.message))),
                }
                busy.set(false);
            });
        }
    };
    let register = {
        let api = api.clone();
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            busy.set(true);
            let api = api.clone();
            spawn_local(async move {
                let (name, address, secret) = (
                    new_name.get_untracked(),
                    new_email.get_untracked(),
                    new_password.get_untracked(),
                );
                match api.register(address.clone(), name, secret).await {
                    Ok(registered) => {
                        let until =
                            videostore_display::time::date_time(registered.confirm_before.as_ref());
                        message.set(Some(Ok(format!(
                            "Almost there: open the link we mailed to {address} to finish \
                             registering. It works until {until}."
                        ))));
                        new_password.set(String::new());
                    }
                    Err(error) => message.set(Some(Err(error.message))),
                }
                busy.set(false);
            });
        }
    };
    let sign_out = move |_| {
        let api = api.clone();
        leptos::task::spawn_local(async move {
            api.sign_out().await;
            state.set(&api, None);
            message.set(Some(Ok("Signed out everywhere.".into())));
        });
    };

    view! {
        <h1>"Account"</h1>
        {move || message.get().map(|m| match m {
            Ok(text) => view! { <p class="status info" role="status" data-outcome="ok">{text}</p> }.into_any(),
            Err(text) => view! { <ErrorMessage message=text/> }.into_any(),
        })}
        <Show
            when=move || session.get().is_none()
            fallback=move || {
                let sign_out = sign_out.clone();
                view! {
                    <p>{move || session.get().map(|s| format!("Signed in as {} ({}){}.", s.name, s.email, if s.staff { ", staff" } else { "" }))}</p>
                    <button name="sign-out" on:click=sign_out>"Sign out"</button>
                }
            }
        >
            <div class="account-forms">
                <form on:submit=sign_in.clone() aria-label="Sign in">
                    <h2>"Sign in"</h2>
                    <label>"Email"<input type="email" name="email" required autocomplete="username"
                        on:input=move |ev| email.set(event_target_value(&ev)) prop:value=move || email.get()/></label>
                    <label>"Password"<input type="password" name="password" required autocomplete="current-password"
                        on:input=move |ev| password.set(event_target_value(&ev)) prop:value=move || password.get()/></label>
                    <button type="submit" name="sign-in" disabled=move || busy.get()>"Sign in"</button>
                </form>
                <form on:submit=register.clone() aria-label="Register">
                    <h2>"New here? Register"</h2>
                    <label>"Name"<input type="text" name="name" required autocomplete="name"
                        on:input=move |ev| new_name.set(event_target_value(&ev)) prop:value=move || new_name.get()/></label>
                    <label>"Email"<input type="email" name="new-email" required autocomplete="email"
                        on:input=move |ev| new_email.set(event_target_value(&ev)) prop:value=move || new_email.get()/></label>
                    <label>"Password (8+ characters)"<input type="password" name="new-password" required minlength="8" autocomplete="new-password"
                        on:input=move |ev| new_password.set(event_target_value(&ev)) prop:value=move || new_password.get()/></label>
                    <button type="submit" name="register" disabled=move || busy.get()>"Register"</button>
                </form>
            </div>
        </Show>
    }
}

/// Where the link in a confirmation mail leads: `/confirm#<code>`. The code is in the fragment,
/// which browsers never send to a server or in a `Referer`, and it is taken out of the address
/// bar at once. The password chosen at registration finishes it (a code pasted by hand works
/// too), so whoever opens a mail someone else asked for cannot make that stranger an account.
#[component]
pub(crate) fn Confirm() -> impl IntoView {
    let api = expect_context::<Api>();
    let state = expect_context::<SessionState>();
    let message = RwSignal::new(None::<Result<String, String>>);
    let busy = RwSignal::new(false);
    let code = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let from_link = RwSignal::new(false);

    if let Some(window) = web_sys::window() {
        let hash = window.location().hash().unwrap_or_default();
        let sent = hash.trim_start_matches('#');
        if !sent.is_empty() {
            code.set(sent.to_owned());
            from_link.set(true);
            if let Ok(history) = window.history() {
                let _ = history.replace_state_with_url(
                    &wasm_bindgen::JsValue::NULL,
                    "",
                    Some("/confirm"),
                );
            }
        }
    }
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        busy.set(true);
        let api = api.clone();
        spawn_local(async move {
            match api.confirm_email(code.get_untracked(), password.get_untracked()).await {
                Ok(signed_in) => {
                    message.set(Some(Ok(format!(
                        "Welcome, {}! Your account is ready, and you are signed in.",
                        signed_in.name
                    ))));
                    state.set(&api, Some(signed_in));
                }
                Err(error) => message.set(Some(Err(error.message))),
            }
            busy.set(false);
        });
    };

    view! {
        <h1>"Confirm your account"</h1>
        {move || message.get().map(|m| match m {
            Ok(text) => view! { <p class="status info" role="status" data-outcome="ok">{text}</p> }.into_any(),
            Err(text) => view! { <ErrorMessage message=text/> }.into_any(),
        })}
        <Show when=move || !matches!(message.get(), Some(Ok(_)))>
            <form on:submit=submit.clone() aria-label="Confirm">
                <Show when=move || !from_link.get()>
                    <label>"Code from the mail"<input type="text" name="code" required autocomplete="one-time-code"
                        on:input=move |ev| code.set(event_target_value(&ev)) prop:value=move || code.get()/></label>
                </Show>
                <label>"The password you chose when registering"<input type="password" name="password" required autocomplete="current-password"
                    on:input=move |ev| password.set(event_target_value(&ev)) prop:value=move || password.get()/></label>
                <button type="submit" name="confirm" disabled=move || busy.get()>"Confirm"</button>
            </form>
        </Show>
    }
}
