//! `videostore.stock.v1.AccountService`: register, sign in, who am I.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use videostore_kit::auth::TokenKeys;
use videostore_proto::stock::{self as pb, account_service_server::AccountService};

use super::convert::account_to_proto;
use crate::{domain, service::Stock};

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
        let (issued, account) = self.stock.sign_in(&request.email, request.password).await?;
        Ok(Response::new(pb::SignInResponse {
            token: issued.token,
            expire_time: Some(issued.expires_at.into()),
            account: Some(account_to_proto(&account)),
        }))
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
