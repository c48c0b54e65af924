//! `health`: every service's standard health check.

use std::{process::ExitCode, time::Duration};

use tonic::Request;

use super::channel;
use crate::Cli;

/// Checks that every service reports SERVING; prints a line each unless `quiet`.
pub(crate) async fn check(cli: &Cli, quiet: bool) -> anyhow::Result<ExitCode> {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let mut all_serving = true;
    for (name, address) in
        [("catalogue", &cli.catalogue), ("stock", &cli.stock), ("aggregator", &cli.aggregator)]
    {
        let status = match channel(address).await {
            Ok(channel) => {
                let mut request = Request::new(HealthCheckRequest { service: String::new() });
                request.set_timeout(Duration::from_secs(2));
                match HealthClient::new(channel).check(request).await {
                    Ok(response) => ServingStatus::try_from(response.into_inner().status)
                        .map_or("UNKNOWN", |s| s.as_str_name()),
                    Err(_) => "NOT ANSWERING",
                }
            }
            Err(_) => "UNREACHABLE",
        };
        all_serving &= status == "SERVING";
        if !quiet {
            println!("{name:<11} {address:<28} {status}");
        }
    }
    Ok(if all_serving { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
