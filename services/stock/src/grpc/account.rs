//! `videostore.stock.v1.AccountService`: register, sign in, refresh, sign out, who am I.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use videostore_kit::auth::TokenKeys;
use videostore_proto::stock::{self as pb, account_service_server::AccountService};

use super::convert::account_to_proto;
use crate::{
    domain,
    service::{Signed, Stock},
};

/// The account handlers.
#[derive(Clone)]
pub(crate) struct AccountApi {
    /// The operations.
    stock: Arc<Stock>,
    /// Verifies callers' tokens.
    keys: TokenKeys,
}

impl AccountApi {
    /// Handlers over `stock`.
    pub(crate) fn new(stock: Arc<Stock>, keys: TokenKeys) -> Self {
        Self { stock, keys }
    }
}

#[tonic::async_trait]
impl AccountService for AccountApi {
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        let request = request.into_inner();
        let email = domain::check_email(&request.email)?;
        let name = domain::check_name(&request.name)?;
        let password = domain::check_password(&request.password)?;
        let account = self.stock.register(email, name, password).await?;
        Ok(Response::new(account_to_proto(&account)))
    }

    async fn sign_in(
        &self,
        request: Request<pb::SignInRequest>,
    ) -> Result<Response<pb::SignInResponse>, Status> {
        let request = request.into_inner();
        let signed = self.stock.sign_in(&request.email, request.password).await?;
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
