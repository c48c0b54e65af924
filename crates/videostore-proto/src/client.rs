//! How the store's native clients (the CLI, the aggregator, the benchmark's load generator)
//! reach a service: one HTTP/2 endpoint with the settings a bulk read needs.

use std::time::Duration;

use tonic::transport::{Endpoint, Error};

use crate::MAX_FRAME_SIZE;

/// An endpoint for `address` (`http://host:port`) with the store's client settings: no Nagle
/// delay (calls are small and latency-bound), frames up to [`MAX_FRAME_SIZE`], and a 3 s
/// connect timeout. Callers add what is theirs (keep-alive, lazy connection, windows).
pub fn endpoint(address: &str) -> Result<Endpoint, Error> {
    Ok(Endpoint::from_shared(address.to_owned())?
        .tcp_nodelay(true)
        .max_frame_size(MAX_FRAME_SIZE)
        .connect_timeout(Duration::from_secs(3)))
}
