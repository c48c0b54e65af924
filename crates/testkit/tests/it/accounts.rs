//! Accounts: register, sign in, tokens.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use testkit::{STAFF_EMAIL, TestStore, authed};
use tonic::{Code, Request};
use videostore_proto::stock::{self as pb};

/// How long a test waits for a mail.
const WAIT: Duration = Duration::from_secs(10);

fn now_seconds() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Register tells nobody whether an address has an account: a taken address gets the same
/// answer as a free one, and nothing changes but a mail to its owner. After five mails to one
/// address in an hour, both kinds are refused alike.
#[tokio::test]
async fn register_does_not_tell_whether_an_address_is_taken() {
    let store = TestStore::start().await;
    store.register("owner@example.com", "Owner", "the owner's password").await;
    let mut accounts = store.account_client().await;
    let register = |email: &str| pb::RegisterRequest {
        email: email.into(),
        name: "Prober".into(),
        password: "a prober's password".into(),
    };
    let taken = accounts.register(register("OWNER@example.com")).await.unwrap();
    let free = accounts.register(register("free@example.com")).await.unwrap();
    let (taken, free) = (taken.into_inner(), free.into_inner());
    assert!(taken.confirm_before.is_some() && free.confirm_before.is_some());
    let gap = taken.confirm_before.unwrap().seconds - free.confirm_before.unwrap().seconds;
    assert!(gap.abs() <= 1, "the same answer, a second apart at most");

    // The owner hears of it; the account and its password are unchanged.
    let note = store.mailbox().next_to("owner@example.com", 1, WAIT).await;
    let note = note.unwrap().expect("the confirmation, then the note");
    assert!(note.subject.contains("tried to register"), "{}", note.subject);
    assert_eq!(note.confirmation_code(), None, "no code that could take the address");
    assert_eq!(store.mailbox().to("owner@example.com").unwrap().len(), 2, "nothing more");
    store.sign_in("owner@example.com", "the owner's password").await;
    let prober = accounts
        .sign_in(pb::SignInRequest {
            email: "owner@example.com".into(),
            password: "a prober's password".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(prober.code(), Code::Unauthenticated);

    // Five mails an hour per address (the owner's has had two): then both kinds are refused.
    for _ in 0..3 {
        accounts.register(register("owner@example.com")).await.unwrap();
    }
    for _ in 0..5 {
        accounts.register(register("other-free@example.com")).await.unwrap();
    }
    let over_taken = accounts.register(register("owner@example.com")).await.unwrap_err();
    let over_free = accounts.register(register("other-free@example.com")).await.unwrap_err();
    assert_eq!(over_taken.code(), Code::ResourceExhausted);
    // The same words; only the seconds to wait differ with when each address was first mailed.
    let words = |status: &tonic::Status| status.message().replace(|c: char| c.is_ascii_digit(), "");
    assert_eq!((over_free.code(), words(&over_free)), (over_taken.code(), words(&over_taken)));
    store.stop().await;
}

/// Register makes no account until the code mailed to the address comes back through
/// ConfirmEmail, which signs the new account in. A code works once.
#[tokio::test]
async fn register_confirm_sign_in_and_get_me() {
    let store = TestStore::start().await;
    let mut accounts = store.account_client().await;
    let answer = accounts
        .register(pb::RegisterRequest {
            email: "Zoë@Example.com".into(),
            name: "Zoë".into(),
            password: "a long password".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let day = answer.confirm_before.unwrap().seconds - now_seconds();
    assert!((86_000..=86_400).contains(&day), "the code works a day: {day} s");
    let not_yet = accounts
        .sign_in(pb::SignInRequest {
            email: "Zoë@Example.com".into(),
            password: "a long password".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(not_yet.code(), Code::Unauthenticated, "no account before the confirmation");

    let code = store.mailbox().confirmation_code("zoë@example.com", WAIT).await.expect("mailed");
    let mail = store.mailbox().to("Zoë@Example.com").unwrap().pop().unwrap();
    assert!(mail.body.contains(&format!("http://shop.test/confirm#{code}")), "{}", mail.body);
    let confirm = |code: &str, password: &str| pb::ConfirmEmailRequest {
        code: code.into(),
        password: password.into(),
    };
    let reversed: String = code.chars().rev().collect();
    let wrong_code = accounts.confirm_email(confirm(&reversed, "a long password")).await;
    assert_eq!(wrong_code.unwrap_err().code(), Code::NotFound);
    // Whoever reads the mail must also know the password chosen at registration, so a mail
    // someone else asked for cannot make an account its reader is then tricked into using.
    let other = accounts.confirm_email(confirm(&code, "the reader's own password")).await;
    let other = other.unwrap_err();
    assert_eq!(other.code(), Code::Unauthenticated);
    assert!(other.message().contains("chosen when registering"), "{}", other.message());
    let confirmed =
        accounts.confirm_email(confirm(&code, "a long password")).await.unwrap().into_inner();
    let account = confirmed.account.unwrap();
    assert_eq!((account.role, account.name.as_str()), (pb::Role::Customer as i32, "Zoë"));
    let me = accounts.get_me(authed(pb::GetMeRequest {}, &confirmed.token)).await.unwrap();
    assert_eq!(me.into_inner().id, account.id, "the confirmation signs in");
    let used = accounts.confirm_email(confirm(&code, "a long password")).await.unwrap_err();
    assert_eq!(used.code(), Code::NotFound);
    assert!(used.message().contains("used already"), "{}", used.message());

    let wrong = accounts
        .sign_in(pb::SignInRequest {
            email: "Zoë@Example.com".into(),
            password: "nope nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated);
    let unknown = accounts
        .sign_in(pb::SignInRequest {
            email: "nobody@example.com".into(),
            password: "nope nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!((unknown.code(), unknown.message()), (Code::Unauthenticated, wrong.message()));

    let signed_in = accounts
        .sign_in(pb::SignInRequest {
            email: "zoë@example.com".into(),
            password: "a long password".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(signed_in.expire_time.is_some());
    let me =
        accounts.get_me(authed(pb::GetMeRequest {}, &signed_in.token)).await.unwrap().into_inner();
    assert_eq!((me.id, me.name.as_str()), (account.id, "Zoë"));

    assert_eq!(
        accounts.get_me(Request::new(pb::GetMeRequest {})).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    let mut tampered = signed_in.token.clone();
    tampered.pop();
    tampered.push('x');
    assert_eq!(
        accounts.get_me(authed(pb::GetMeRequest {}, &tampered)).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    store.stop().await;
}

/// A password is compared as Unicode NFKC: typed with a composed or a decomposed accent, or
/// full-width digits, it is the same password.
#[tokio::test]
async fn a_password_signs_in_however_its_accents_were_typed() {
    let store = TestStore::start().await;
    store.register("cafe@example.com", "Café", "cafe\u{301} au lait ２０２６").await;
    store.sign_in("cafe@example.com", "caf\u{e9} au lait 2026").await;
    let wrong = store
        .account_client()
        .await
        .sign_in(pb::SignInRequest {
            email: "cafe@example.com".into(),
            password: "cafe au lait 2026".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated);
    store.stop().await;
}

#[tokio::test]
async fn registration_input_is_validated() {
    let store = TestStore::start().await;
    let mut accounts = store.account_client().await;
    for (email, name, password, field) in [
        ("", "A", "long enough", "email"),
        ("not-an-email", "A", "long enough", "email"),
        ("a@example.com", "", "long enough", "name"),
        ("a@example.com", "A", "short", "password"),
        ("a@example.com", &"n".repeat(101) as &str, "long enough", "name"),
        ("a@example.com", "A", "Password1", "most common"),
        ("a@example.com", "A", "          ", "only spaces"),
        ("a@example.com", "Ann\u{202E}nimda", "long enough", "U+202E"),
        ("a\u{200B}b@example.com", "A", "long enough", "email"),
    ] {
        let status = accounts
            .register(pb::RegisterRequest {
                email: email.into(),
                name: name.into(),
                password: password.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains(field), "{:?} should mention {field}", status.message());
    }
    store.stop().await;
}

#[tokio::test]
async fn configured_staff_account_is_staff() {
    let store = TestStore::start().await;
    let token = store.staff_token().await;
    let me = store
        .account_client()
        .await
        .get_me(authed(pb::GetMeRequest {}, &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((me.email.as_str(), me.role), (STAFF_EMAIL, pb::Role::Staff as i32));
    store.stop().await;
}

/// Anyone can register the staff address before the operator configures it: such a customer
/// account is never made staff silently. Stock refuses to start, and promotes it only when
/// asked to and given the account's own password.
#[tokio::test]
async fn a_customer_registered_under_the_staff_email_is_not_made_staff() {
    let mut store = TestStore::start().await;
    let email = "early-bird@example.com";
    let password = "squatter password";
    store.register(email, "Early Bird", password).await;
    store.stop_stock().await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let base = store.stock_config();
    let clock: std::sync::Arc<dyn stock::clock::Clock> = store.clock.clone();
    let start = |promote: bool, staff_password: &str| {
        let mut config = base.clone();
        config.staff_email = Some(email.into());
        config.staff_password = Some(staff_password.into());
        config.staff_promote_existing = promote;
        stock::startup::Application::build(config, clock.clone(), shutdown.clone())
    };

    let refused = start(false, "operator password 1").await.err().expect("refused");
    let message = format!("{refused:#}");
    assert!(
        message.contains("customer account") && message.contains("not made staff"),
        "{message}"
    );
    let refused = start(true, "operator password 1").await.err().expect("refused");
    let message = format!("{refused:#}");
    assert!(message.contains("does not sign in"), "{message}");

    // Nothing changed: still a customer.
    store.start_stock().await;
    assert_eq!(role(&store, email, password).await, pb::Role::Customer as i32);
    store.stop_stock().await;

    // Asked, with the account's own password: made staff.
    let app = start(true, password).await.expect("starts");
    let server = tokio::spawn(app.run());
    shutdown.cancel();
    server.await.unwrap().unwrap();
    store.start_stock().await;
    assert_eq!(role(&store, email, password).await, pb::Role::Staff as i32);
    store.stop().await;
}

/// The role of the account, as it sees itself after signing in.
async fn role(store: &TestStore, email: &str, password: &str) -> i32 {
    let token = store.sign_in(email, password).await;
    let me = store.account_client().await.get_me(authed(pb::GetMeRequest {}, &token)).await;
    me.unwrap().into_inner().role
}

/// 300 sign-ins at once, each for `email(i)` with a wrong password: how many were refused as
/// too many (RESOURCE_EXHAUSTED, with a message saying when to try again); every other one is
/// UNAUTHENTICATED.
async fn flood(store: &TestStore, email: impl Fn(usize) -> String) -> usize {
    let client = store.account_client().await;
    let calls = (0..300).map(|i| {
        let mut client = client.clone();
        let email = email(i);
        async move {
            let request = pb::SignInRequest { email, password: "not the password".into() };
            client.sign_in(request).await
        }
    });
    let answers = futures::future::join_all(calls).await;
    let mut refused = 0;
    for answer in &answers {
        let status = answer.as_ref().expect_err("a wrong password");
        match status.code() {
            Code::Unauthenticated => {}
            Code::ResourceExhausted => {
                assert!(status.message().contains("try again"), "{}", status.message());
                refused += 1;
            }
            other => panic!("{other:?}: {}", status.message()),
        }
    }
    refused
}

/// A flood of sign-ins for made-up emails costs no Argon2 run, so it is answered in full; one
/// for a real account (Argon2 is a CPU amplifier) is refused past a short queue at once instead
/// of piling up. A sign-in after both works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_flood_is_refused_past_the_queue_and_the_store_still_signs_in() {
    let store = TestStore::start().await;
    // Learns how long a verification takes (the first unknown email runs one).
    store.sign_in(testkit::STAFF_EMAIL, testkit::STAFF_PASSWORD).await;
    let made_up = flood(&store, |i| format!("flood-{i}@example.com")).await;
    assert_eq!(made_up, 0, "made-up emails never reach the password queue");
    let email = "flooded@example.com";
    store.register(email, "Flooded", "a good long password").await;
    let refused = flood(&store, |_| email.to_owned()).await;
    eprintln!("{refused} of 300 simultaneous sign-ins refused as too many");
    assert!(refused > 0, "300 at once cannot all fit the queue");
    store.staff_token().await;
    store.stop().await;
}

#[tokio::test]
async fn catalogue_verifies_tokens_issued_by_stock_without_calling_it() {
    let mut store = TestStore::start().await;
    let token = store.staff_token().await;
    store.stop_stock().await;
    // Stock is down; the catalogue still accepts the staff token on its own.
    let created = store
        .catalogue_client()
        .await
        .create_movie(authed(
            videostore_proto::catalogue::CreateMovieRequest {
                movie: Some(videostore_proto::catalogue::Movie {
                    title: "Offline Verified".into(),
                    release_year: 2020,
                    ..Default::default()
                }),
                ..Default::default()
            },
            &token,
        ))
        .await;
    assert!(created.is_ok(), "{created:?}");
    store.stop().await;
}

/// Only stock's private key makes a token: a staff token signed with any other Ed25519 key (as
/// the catalogue could once mint with the shared secret) is refused by every service.
#[tokio::test]
async fn staff_tokens_signed_by_any_other_key_are_refused_everywhere() {
    use std::time::{Duration, SystemTime};

    use videostore_kit::auth::{Caller, KeyPairPem, Role, TokenSigner};
    use videostore_kit::ids::AccountId;

    let store = TestStore::start().await;
    let real = store.staff_token().await;
    let staff = store.account_client().await.get_me(authed(pb::GetMeRequest {}, &real)).await;
    let staff = staff.unwrap().into_inner();
    let caller =
        Caller { account_id: AccountId::new(staff.id), email: staff.email, role: Role::Staff };
    let other = TokenSigner::from_pem(&KeyPairPem::generate().unwrap().private).unwrap();
    let forged = other.issue(&caller, SystemTime::now(), Duration::from_secs(600)).unwrap().token;
    let create = |token: &str| {
        authed(
            videostore_proto::catalogue::CreateMovieRequest {
                movie: Some(videostore_proto::catalogue::Movie {
                    title: "Forged".into(),
                    release_year: 2020,
                    ..Default::default()
                }),
                ..Default::default()
            },
            token,
        )
    };
    let mut catalogue = store.catalogue_client().await;
    let refused = catalogue.create_movie(create(&forged)).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    let inventory = |token: &str| {
        let money = |minor_units| Some(pb::Money { currency_code: "EUR".into(), minor_units });
        let request = pb::SetInventoryRequest {
            movie_id: 1,
            copies_owned: 9,
            rental_price_per_day: money(300),
            purchase_price: money(1500),
        };
        authed(request, token)
    };
    let mut stock = store.stock_client().await;
    let refused = stock.set_inventory(inventory(&forged)).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    // The real one, from stock's key, is accepted by both.
    catalogue.create_movie(create(&real)).await.unwrap();
    stock.set_inventory(inventory(&real)).await.unwrap();
    store.stop().await;
}

/// Access tokens are short-lived and refreshed; signing out ends every session of the account.
#[tokio::test]
async fn refresh_renews_a_session_and_sign_out_ends_them_all() {
    let store = TestStore::start().await;
    let mut accounts = store.account_client().await;
    store.register("ines@example.com", "Ines", "ines password").await;
    let sign_in =
        || pb::SignInRequest { email: "ines@example.com".into(), password: "ines password".into() };
    let laptop = accounts.sign_in(sign_in()).await.unwrap().into_inner();
    let phone = accounts.sign_in(sign_in()).await.unwrap().into_inner();
    assert!(laptop.refresh_expire_time.unwrap().seconds > laptop.expire_time.unwrap().seconds);

    // A refresh gives a working access token and a new refresh token.
    let refresh = |token: &str| pb::RefreshRequest { refresh_token: token.into() };
    let renewed = accounts.refresh(refresh(&laptop.refresh_token)).await.unwrap().into_inner();
    let me = accounts.get_me(authed(pb::GetMeRequest {}, &renewed.token)).await.unwrap();
    assert_eq!(me.into_inner().email, "ines@example.com");
    assert_eq!(renewed.account.unwrap().name, "Ines");
    // The two kinds are not taken for each other.
    let as_bearer =
        accounts.get_me(authed(pb::GetMeRequest {}, &laptop.refresh_token)).await.unwrap_err();
    assert_eq!(as_bearer.code(), Code::Unauthenticated);
    let as_refresh = accounts.refresh(refresh(&laptop.token)).await.unwrap_err();
    assert_eq!(as_refresh.code(), Code::Unauthenticated);
    let garbage = accounts.refresh(refresh("not a token")).await.unwrap_err();
    assert_eq!(garbage.code(), Code::Unauthenticated);

    // Signing out on the phone ends the laptop's session too: no refresh token of the account
    // is taken again, the renewed one included.
    accounts
        .sign_out(pb::SignOutRequest { refresh_token: phone.refresh_token.clone() })
        .await
        .unwrap();
    for token in [&laptop.refresh_token, &phone.refresh_token, &renewed.refresh_token] {
        let ended = accounts.refresh(refresh(token)).await.unwrap_err();
        assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
        assert!(ended.message().contains("sign in again"), "{}", ended.message());
    }
    // Signing in again starts a new session that refreshes.
    let again = accounts.sign_in(sign_in()).await.unwrap().into_inner();
    accounts.refresh(refresh(&again.refresh_token)).await.unwrap();
    store.stop().await;
}

/// A long staff stream checks its token at every command: the desk and an import end
/// UNAUTHENTICATED once it has expired, instead of running on for as long as they stay open.
#[tokio::test]
async fn long_staff_streams_end_when_their_token_expires() {
    use std::time::{Duration, SystemTime};

    use videostore_kit::auth::{Caller, Role, TokenSigner};
    use videostore_kit::ids::AccountId;

    let store = TestStore::start().await;
    let real = store.staff_token().await;
    let me = store.account_client().await.get_me(authed(pb::GetMeRequest {}, &real)).await;
    let me = me.unwrap().into_inner();
    let staff = Caller { account_id: AccountId::new(me.id), email: me.email, role: Role::Staff };
    // A token that expired a second ago: still inside the 5 s leeway when the streams open,
    // past it a few seconds later.
    let signer = TokenSigner::from_pem(&store.keys.private).unwrap();
    let issued_at = SystemTime::now() - Duration::from_secs(61);
    let token = signer.issue(&staff, issued_at, Duration::from_secs(60)).unwrap().token;

    let (commands, receiver) = tokio::sync::mpsc::channel(4);
    let mut desk = store
        .stock_client()
        .await
        .rental_desk(authed(tokio_stream::wrappers::ReceiverStream::new(receiver), &token))
        .await
        .unwrap()
        .into_inner();
    let (batches, batch_receiver) = tokio::sync::mpsc::channel(4);
    let import = {
        let mut catalogue = store.catalogue_client().await;
        let request = authed(tokio_stream::wrappers::ReceiverStream::new(batch_receiver), &token);
        tokio::spawn(async move { catalogue.import_movies(request).await })
    };
    tokio::time::sleep(Duration::from_secs(5)).await;

    commands
        .send(pb::DeskCommand {
            command_id: "late".into(),
            action: Some(pb::desk_command::Action::Return(pb::DeskReturn { rental_id: 1 })),
        })
        .await
        .unwrap();
    let ended = desk.message().await.unwrap_err();
    assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
    assert!(ended.message().contains("expired"), "{}", ended.message());

    let film = videostore_proto::catalogue::Movie {
        title: "Too Late".into(),
        release_year: 2020,
        external_key: "too-late".into(),
        ..Default::default()
    };
    batches
        .send(videostore_proto::catalogue::ImportMoviesRequest { movies: vec![film] })
        .await
        .unwrap();
    drop(batches);
    let ended = import.await.unwrap().unwrap_err();
    assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
    // Nothing of the refused batch was written.
    let found = store
        .catalogue_client()
        .await
        .list_movies(videostore_proto::catalogue::ListMoviesRequest {
            filter: Some(videostore_proto::catalogue::MovieFilter {
                query: "Too Late".into(),
                ..Default::default()
            }),
            page_size: 5,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(found.movies.iter().all(|m| m.title != "Too Late"));
    store.stop().await;
}

/// The abuse limits: sign-ins and registrations per address, writes per account, and a pause
/// after repeated failed sign-ins of one email. Each refusal is RESOURCE_EXHAUSTED with a
/// `google.rpc.RetryInfo` that says when to come back, and coming back then works.
#[tokio::test]
async fn abusers_are_slowed_down_and_told_when_to_come_back() {
    use std::time::Duration;

    use tonic_types::StatusExt;

    let mut store = TestStore::start().await;
    let (_, token) = store.customer("Steady").await;
    store.stop_stock().await;
    let mut config = store.stock_config();
    config.sign_ins_per_minute = 8;
    config.writes_per_minute = 3;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let clock: std::sync::Arc<dyn stock::clock::Clock> = store.clock.clone();
    let app = stock::startup::Application::build(config, clock, shutdown.clone()).await.unwrap();
    let channel = TestStore::channel(app.local_addr()).await;
    let server = tokio::spawn(app.run());
    let mut accounts = pb::account_service_client::AccountServiceClient::new(channel.clone());
    let mut stock = pb::stock_service_client::StockServiceClient::new(channel);
    let retry_delay = |status: &tonic::Status| {
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        status.get_details_retry_info().and_then(|info| info.retry_delay).expect("a retry hint")
    };

    // Writes per account: three a minute, then a wait of about 20 s.
    for film in 1..=3 {
        let request = pb::RentRequest { movie_id: film, days: 1, request_id: format!("w{film}") };
        stock.rent(authed(request, &token)).await.unwrap();
    }
    let request = pb::RentRequest { movie_id: 4, days: 1, request_id: "w4".into() };
    let limited = stock.rent(authed(request, &token)).await.unwrap_err();
    let wait = retry_delay(&limited);
    assert!(wait > Duration::from_secs(10) && wait <= Duration::from_secs(20), "{wait:?}");
    assert!(limited.message().contains("try again in"), "{}", limited.message());

    // An email guessed at: five failures, then a pause, told in the hint; after it the right
    // password works (and the pause is over for good).
    let sign_in =
        |password: &str| pb::SignInRequest { email: STAFF_EMAIL.into(), password: password.into() };
    for _ in 0..5 {
        let wrong = accounts.sign_in(sign_in("guess guess")).await.unwrap_err();
        assert_eq!(wrong.code(), Code::Unauthenticated);
    }
    let paused = accounts.sign_in(sign_in(testkit::STAFF_PASSWORD)).await.unwrap_err();
    let wait = retry_delay(&paused);
    assert!(wait <= Duration::from_secs(1), "{wait:?}");
    assert!(paused.message().contains("failed sign-ins"), "{}", paused.message());
    tokio::time::sleep(wait).await;
    accounts.sign_in(sign_in(testkit::STAFF_PASSWORD)).await.unwrap();

    // Sign-ins and registrations from one address: eight a minute in all (seven so far).
    let register = pb::RegisterRequest {
        email: "late@example.com".into(),
        name: "Late".into(),
        password: "late password".into(),
    };
    accounts.register(register.clone()).await.unwrap();
    let limited = accounts.sign_in(sign_in(testkit::STAFF_PASSWORD)).await.unwrap_err();
    let wait = retry_delay(&limited);
    assert!(wait > Duration::from_secs(1) && wait <= Duration::from_secs(8), "{wait:?}");
    let limited = accounts.register(register).await.unwrap_err();
    retry_delay(&limited);

    shutdown.cancel();
    server.await.unwrap().unwrap();
    store.start_stock().await;
    store.stop().await;
}

/// A shop sends its mail through an SMTP relay: the confirmation reaches the relay as a real
/// SMTP message from the shop's sender, and its code makes the account. A mail the relay
/// refuses (an unknown mailbox) stays queued to be tried again, and the mail after it still
/// goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_mail_goes_through_an_smtp_relay() {
    let mut store = TestStore::start().await;
    let relay = testkit::smtp::SmtpRelay::start().await;
    store.stop_stock().await;
    let mut config = store.stock_config();
    config.mail_dir = None;
    config.smtp_url = Some(format!("smtp://{}", relay.addr));
    config.mail_from = Some("Video Store <shop@example.com>".into());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let clock: std::sync::Arc<dyn stock::clock::Clock> = store.clock.clone();
    let app = stock::startup::Application::build(config, clock, shutdown.clone()).await.unwrap();
    let addr = app.local_addr();
    let outbox = app.store();
    let server = tokio::spawn(app.run());
    let mut accounts =
        pb::account_service_client::AccountServiceClient::new(TestStore::channel(addr).await);
    let register = |email: &str| pb::RegisterRequest {
        email: email.into(),
        name: "Relayed".into(),
        password: "relayed password".into(),
    };
    accounts.register(register("refused@example.com")).await.unwrap();
    accounts.register(register("relayed@example.com")).await.unwrap();
    let received = relay.received_within(Duration::from_secs(10)).await;
    assert_eq!(received.len(), 1, "the refused one waits, the next one sent: {received:?}");
    assert_eq!(received[0].to, ["relayed@example.com"]);
    assert!(
        received[0].data.contains("From: \"Video Store\" <shop@example.com>\r\n"),
        "{}",
        received[0].data
    );
    // Still queued, for when its claim runs out.
    let later = std::time::SystemTime::now() + Duration::from_secs(3600);
    let waiting = outbox.claim_mail(later, later, 10).await.unwrap();
    let waiting: Vec<&str> = waiting.iter().map(|mail| mail.mail.to.as_str()).collect();
    assert_eq!(waiting, ["refused@example.com"]);
    let mail = stock::mail::Delivered::parse(&received[0].data).unwrap();
    assert_eq!(mail.to, "relayed@example.com");
    assert!(received[0].data.contains("\r\nDate: "), "{}", received[0].data);
    let code = mail.confirmation_code().expect("a code").to_owned();
    let confirmed = accounts
        .confirm_email(pb::ConfirmEmailRequest { code, password: "relayed password".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(confirmed.account.unwrap().email, "relayed@example.com");
    shutdown.cancel();
    server.await.unwrap().unwrap();
    store.start_stock().await;
    store.stop().await;
}

/// Over TLS (`smtps://`) the relay's certificate is checked against `VIDEOSTORE_SMTP_CA`: a
/// relay whose certificate another CA signed gets no mail (it stays queued), the right one does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_goes_only_to_a_tls_relay_with_a_certificate_the_ca_signed() {
    let mut store = TestStore::start().await;
    let pki = crate::tls::Pki::new();
    let server = videostore_kit::tls::server_config(&pki.path("cert.pem"), &pki.path("key.pem"));
    let relay = testkit::smtp::SmtpRelay::start_tls(server.unwrap()).await;
    let other_ca = pki.path("other-ca.pem");
    std::fs::write(&other_ca, &pki.other_ca_pem).unwrap();
    store.stop_stock().await;
    for (ca, email) in
        [(other_ca, "unverified@example.com"), (pki.path("ca.pem"), "tls@example.com")]
    {
        let smtps = format!("smtps://127.0.0.1:{}", relay.addr.port());
        let sent = email == "tls@example.com";
        let (received, _) = register_through_relay(&store, &relay, smtps, &ca, email, sent).await;
        if sent {
            assert_eq!(received.len(), 1, "{received:?}");
            assert_eq!(received[0].to, [email]);
        } else {
            assert!(received.is_empty(), "sent to a relay its CA did not sign: {received:?}");
        }
    }
    store.start_stock().await;
    store.stop().await;
}

/// Through a submission relay (STARTTLS, `?tls=required`, with a login): the relay's certificate
/// is checked against `VIDEOSTORE_SMTP_CA` after STARTTLS, and stock signs in with the URL's
/// user and password. With a wrong password nothing is sent and nothing dropped: the mail stays
/// queued for when the relay takes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_goes_through_starttls_and_a_login_and_waits_when_the_login_is_wrong() {
    let mut store = TestStore::start().await;
    let pki = crate::tls::Pki::new();
    let server = videostore_kit::tls::server_config(&pki.path("cert.pem"), &pki.path("key.pem"));
    let relay =
        testkit::smtp::SmtpRelay::start_starttls(server.unwrap(), Some(("shop", "s3cret pass")))
            .await;
    store.stop_stock().await;
    let mut outbox = None;
    for (password, email) in [("wrong", "waits@example.com"), ("s3cret%20pass", "sent@example.com")]
    {
        let port = relay.addr.port();
        let url = format!("smtp://shop:{password}@127.0.0.1:{port}?tls=required");
        let sent = email == "sent@example.com";
        let (received, stock) =
            register_through_relay(&store, &relay, url, &pki.path("ca.pem"), email, sent).await;
        outbox = Some(stock);
        if sent {
            assert_eq!(received.len(), 1, "{received:?}");
            assert_eq!(received[0].to, [email]);
        } else {
            assert!(received.is_empty(), "sent without the right login: {received:?}");
        }
    }
    // The one refused for the login is still queued, for when its claim runs out.
    let later = std::time::SystemTime::now() + Duration::from_secs(3600);
    let waiting = outbox.unwrap().claim_mail(later, later, 10).await.unwrap();
    let waiting: Vec<&str> = waiting.iter().map(|mail| mail.mail.to.as_str()).collect();
    assert_eq!(waiting, ["waits@example.com"]);
    store.start_stock().await;
    store.stop().await;
}

/// Runs stock on `store`'s data, sending mail through `smtp_url` with the relay's certificate
/// checked against `ca`; registers `email`; and gives back what the relay took, waiting up to
/// 10 s for the mail when it is `expected` (else 1 s, long enough for a delivery on 127.0.0.1),
/// with that stock's store (its outbox). Stock is stopped again before this returns.
async fn register_through_relay(
    store: &TestStore,
    relay: &testkit::smtp::SmtpRelay,
    smtp_url: String,
    ca: &std::path::Path,
    email: &str,
    expected: bool,
) -> (Vec<testkit::smtp::Received>, std::sync::Arc<dyn stock::store::StockStore>) {
    let mut config = store.stock_config();
    config.mail_dir = None;
    config.smtp_url = Some(smtp_url);
    config.smtp_ca = Some(ca.display().to_string());
    config.mail_from = Some("shop@example.com".into());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let clock: std::sync::Arc<dyn stock::clock::Clock> = store.clock.clone();
    let app = stock::startup::Application::build(config, clock, shutdown.clone());
    let app = app.await.unwrap();
    let addr = app.local_addr();
    let outbox = app.store();
    let server = tokio::spawn(app.run());
    let mut accounts =
        pb::account_service_client::AccountServiceClient::new(TestStore::channel(addr).await);
    let request = pb::RegisterRequest {
        email: email.into(),
        name: "Relayed".into(),
        password: "relayed password".into(),
    };
    accounts.register(request).await.unwrap();
    let wait = Duration::from_secs(if expected { 10 } else { 1 });
    let received = relay.received_within(wait).await;
    shutdown.cancel();
    server.await.unwrap().unwrap();
    (received, outbox)
}
