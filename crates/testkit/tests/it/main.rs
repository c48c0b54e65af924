//! System tests: the real services on ephemeral ports, called over real gRPC, gRPC-Web on
//! HTTP/1.1 and HTTP/JSON.

mod accounts;
mod aggregator;
mod catalogue;
mod exports;
mod front_door;
mod grpc_web;
mod hostile;
mod limits;
mod logs;
mod metrics;
mod postgres;
mod rentals;
mod stock;
mod tls;
mod traces;
