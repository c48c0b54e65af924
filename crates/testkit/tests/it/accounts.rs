//! Accounts: register, sign in, tokens.

use testkit::{STAFF_EMAIL, TestStore, authed};
use tonic::{Code, Request};
use videostore_proto::stock::{self as pb};

#[tokio::test]
async fn register_sign_in_and_get_me() {
    let store = TestStore::start().await;
    let mut accounts = store.account_client().await;
    let account = accounts
        .register(pb::RegisterRequest {
            email: "Zoë@Example.com".into(),
            name: "Zoë".into(),
            password: "a long password".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(account.role, pb::Role::Customer as i32);

    let taken = accounts
        .register(pb::RegisterRequest {
            email: "zoë@example.COM".into(),
            name: "Other".into(),
            password: "another password".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists);

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
