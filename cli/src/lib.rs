//! The part of the `videostore` command line that other crates use: reading film files for
//! `movies import` (the fuzz targets feed it arbitrary files).

pub mod rows;
