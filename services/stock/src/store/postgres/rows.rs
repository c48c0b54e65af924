//! Rows of the stock tables as domain values, and the column lists they are read in.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use videostore_kit::postgres::tokio_postgres::Row;

use crate::domain::{
    Account, AccountId, Availability, MovieId, Purchase, PurchaseId, Rental, RentalId, Role,
};

pub(super) const INVENTORY_COLUMNS: &str = "movie_id, copies_owned, copies_available, currency, \
                                 rental_price_minor, purchase_price_minor, version";
pub(super) const RENTAL_COLUMNS: &str = "id, customer_id, movie_id, days, rented_ms, due_ms, returned_ms, \
                              currency, price_per_day_minor, price_minor, late_fee_minor, request_id";
pub(super) const PURCHASE_COLUMNS: &str =
    "id, customer_id, movie_id, currency, price_minor, purchased_ms, request_id";
pub(super) const ACCOUNT_COLUMNS: &str = "id, email, name, role, created_ms, session_version";

pub(super) fn millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

pub(super) fn time(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

/// `INVENTORY_COLUMNS` from `row`, starting at column `at`.
pub(super) fn availability_at(row: &Row, at: usize) -> Availability {
    Availability {
        movie_id: MovieId::new(row.get(at)),
        copies_owned: row.get(at + 1),
        copies_available: row.get(at + 2),
        currency: row.get(at + 3),
        rental_price_minor: row.get(at + 4),
        purchase_price_minor: row.get(at + 5),
        version: row.get(at + 6),
    }
}

pub(super) fn availability_from_row(row: &Row) -> Availability {
    availability_at(row, 0)
}

pub(super) fn rental_from_row(row: &Row) -> Rental {
    rental_at(row, 0)
}

/// `RENTAL_COLUMNS` from `row`, starting at column `at`.
pub(super) fn rental_at(row: &Row, at: usize) -> Rental {
    Rental {
        id: RentalId::new(row.get(at)),
        customer_id: AccountId::new(row.get(at + 1)),
        movie_id: MovieId::new(row.get(at + 2)),
        days: row.get(at + 3),
        rented_at: time(row.get(at + 4)),
        due_at: time(row.get(at + 5)),
        returned_at: row.get::<_, Option<i64>>(at + 6).map(time),
        currency: row.get(at + 7),
        price_per_day_minor: row.get(at + 8),
        price_minor: row.get(at + 9),
        late_fee_minor: row.get(at + 10),
        // Empty once forgotten (see `expire_request_ids`).
        request_id: row.get::<_, Option<String>>(at + 11).unwrap_or_default(),
    }
}

pub(super) fn purchase_from_row(row: &Row) -> Purchase {
    purchase_at(row, 0)
}

/// `PURCHASE_COLUMNS` from `row`, starting at column `at`.
pub(super) fn purchase_at(row: &Row, at: usize) -> Purchase {
    Purchase {
        id: PurchaseId::new(row.get(at)),
        customer_id: AccountId::new(row.get(at + 1)),
        movie_id: MovieId::new(row.get(at + 2)),
        currency: row.get(at + 3),
        price_minor: row.get(at + 4),
        purchased_at: time(row.get(at + 5)),
        request_id: row.get::<_, Option<String>>(at + 6).unwrap_or_default(),
    }
}

pub(super) fn role_text(role: Role) -> &'static str {
    match role {
        Role::Staff => "staff",
        Role::Customer => "customer",
    }
}

pub(super) fn account_from_row(row: &Row) -> Account {
    let role: &str = row.get(3);
    Account {
        id: AccountId::new(row.get(0)),
        email: row.get(1),
        name: row.get(2),
        role: if role == "staff" { Role::Staff } else { Role::Customer },
        created_at: time(row.get(4)),
        session_version: row.get(5),
    }
}

/// `columns` (comma-separated), each prefixed with `table.`.
pub(super) fn prefixed(table: &str, columns: &str) -> String {
    columns
        .split(',')
        .map(|column| format!("{table}.{}", column.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}
