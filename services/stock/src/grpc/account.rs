//! `videostore.stock.v1.AccountService`: register and confirm, sign in, refresh, sign out, who am
//! I.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use videostore_kit::auth::TokenKeys;
use videostore_proto::stock::{self as pb, account_service_server::AccountService};

use super::convert::account_to_proto;
use crate::{
    domain,
    error::Error,
    limits::Limits,
    service::{Signed, Stock},
};

/// The account handlers.
#[derive(Clone)]
pub(crate) struct AccountApi {
    /// The operations.
    stock: Arc<Stock>,
    /// Verifies callers' tokens.
    keys: TokenKeys,
    /// Sign-ins per client, and the back-off after failures.
    limits: Arc<Limits>,
}

impl AccountApi {
    /// Handlers over `stock`.
    pub(crate) fn new(stock: Arc<Stock>, keys: TokenKeys, limits: Arc<Limits>) -> Self {
        Self { stock, keys, limits }
    }
}

#[tonic::async_trait]
impl AccountService for AccountApi {
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        self.limits.sign_in_attempt(&request)?;
        let request = request.into_inner();
        let email = domain::check_email(&request.email)?;
        let name = domain::check_name(&request.name)?;
        let password = domain::check_password(&request.password)?;
        self.limits.mail_to(&email)?;
        let confirm_before = self.stock.register(email, name, password).await?;
        Ok(Response::new(pb::RegisterResponse { confirm_before: Some(confirm_before.into()) }))
    }

    async fn confirm_email(
        &self,
        request: Request<pb::ConfirmEmailRequest>,
    ) -> Result<Response<pb::SignInResponse>, Status> {
        self.limits.sign_in_attempt(&request)?;
        let request = request.into_inner();
        let signed = self.stock.confirm_email(&request.code, request.password).await?;
        Ok(Response::new(signed_to_proto(signed)))
    }

    async fn sign_in(
        &self,
        request: Request<pb::SignInRequest>,
    ) -> Result<Response<pb::SignInResponse>, Status> {
        self.limits.sign_in_attempt(&request)?;
        let request = request.into_inner();
        self.limits.may_sign_in(&request.email)?;
        let signed = match self.stock.sign_in(&request.email, request.password).await {
            Ok(signed) => signed,
            Err(Error::WrongCredentials) => {
                self.limits.sign_in_failed(&request.email);
                return Err(Error::WrongCredentials.into());
            }
            Err(other) => return Err(other.into()),
        };
        self.limits.sign_in_worked(&request.email);
        Ok(Response::new(signed_to_proto(signed)))
    }

    async fn refresh(
        &self,
        request: Request<pb::RefreshRequest>,
    ) -> Result<Response<pb::SignInResponse>, Status> {
        let signed = self.stock.refresh(request.get_ref().refresh_token.trim()).await?;
        Ok(Response::new(signed_to_proto(signed)))
    }

    async fn sign_out(
        &self,
        request: Request<pb::SignOutRequest>,
    ) -> Result<Response<pb::SignOutResponse>, Status> {
        self.stock.sign_out(request.get_ref().refresh_token.trim()).await?;
        Ok(Response::new(pb::SignOutResponse {}))
    }

    async fn get_me(
        &self,
        request: Request<pb::GetMeRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        let caller = self.keys.require_signed_in(request.metadata())?;
        let account = self.stock.me(&caller).await?;
        Ok(Response::new(account_to_proto(&account)))
    }
}

fn signed_to_proto(signed: Signed) -> pb::SignInResponse {
    pb::SignInResponse {
        token: signed.access.token,
        expire_time: Some(signed.access.expires_at.into()),
        account: Some(account_to_proto(&signed.account)),
        refresh_token: signed.refresh.token,
        refresh_expire_time: Some(signed.refresh.expires_at.into()),
    }
}
