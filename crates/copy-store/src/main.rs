//! `videostore-copy-store`: moves a shop that outgrew its laptop from the embedded SQLite
//! databases (`<data dir>/catalogue.db`, `<data dir>/stock.db`) into empty PostgreSQL ones:
//! every film, stocked film, account, rental and purchase, with its id. Each database is copied
//! in one transaction that checks the counts (and, for stock, the invariant copies available =
//! copies owned − open rentals) before it commits, and a target that holds anything is refused.
//!
//! The targets are the URLs the services will use (`CATALOGUE_DATABASE_URL`,
//! `STOCK_DATABASE_URL`); start the services on them only after the copy.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Parser;

/// Copies the embedded store into empty PostgreSQL databases.
#[derive(Debug, Parser)]
#[command(name = "videostore-copy-store")]
struct Args {
    /// The data folder of the store to copy (its catalogue.db and stock.db).
    #[arg(long, env = "VIDEOSTORE_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// The empty PostgreSQL catalogue database to copy the films into.
    #[arg(long, env = "CATALOGUE_DATABASE_URL")]
    catalogue_to: Option<String>,
    /// The empty PostgreSQL stock database to copy stock, accounts, rentals and purchases into.
    #[arg(long, env = "STOCK_DATABASE_URL")]
    stock_to: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.catalogue_to.is_some() || args.stock_to.is_some(),
        "nothing to do: give --catalogue-to and/or --stock-to (postgres:// URLs)"
    );
    let catalogue_from = source(&args.data_dir, "catalogue.db", args.catalogue_to.is_some())?;
    let stock_from = source(&args.data_dir, "stock.db", args.stock_to.is_some())?;
    if let (Some(from), Some(to)) = (&catalogue_from, &args.catalogue_to) {
        let films = catalogue::copy::sqlite_to_postgres(from, to)
            .await
            .context("copying the catalogue (nothing of it was written)")?;
        println!("catalogue: copied {films} films");
    }
    if let (Some(from), Some(to)) = (&stock_from, &args.stock_to) {
        let copied = stock::copy::sqlite_to_postgres(from, to).await.with_context(|| {
            let done = if args.catalogue_to.is_some() {
                "; the catalogue was copied, so run again with --stock-to only"
            } else {
                ""
            };
            format!("copying stock (nothing of it was written{done})")
        })?;
        println!(
            "stock: copied {} stocked films, {} accounts, {} rentals, {} purchases",
            copied.stocked, copied.accounts, copied.rentals, copied.purchases
        );
    }
    Ok(())
}

/// The `sqlite://` URL of `file` in the data folder, if it is wanted; an error if it is wanted
/// and missing (opening would create an empty one).
fn source(data_dir: &Path, file: &str, wanted: bool) -> anyhow::Result<Option<String>> {
    if !wanted {
        return Ok(None);
    }
    let path = data_dir.join(file);
    anyhow::ensure!(path.is_file(), "there is no {} to copy", path.display());
    Ok(Some(format!("sqlite://{}", path.display())))
}
