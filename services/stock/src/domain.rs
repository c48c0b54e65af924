//! The rental business in plain types: money, stock, rentals, purchases, accounts, and the rules
//! that do not need a database (late fees, input limits).

use std::time::{Duration, SystemTime};

pub use videostore_kit::{
    auth::Role,
    error::Invalid,
    ids::{AccountId, MovieId, PurchaseId, RentalId},
};

/// Longest rental, in days.
pub const MAX_RENTAL_DAYS: i32 = 90;
/// Longest request id, in characters.
pub const MAX_REQUEST_ID_CHARS: usize = 100;
/// Most copies of one film.
pub const MAX_COPIES: i32 = 100_000;
/// Longest email address, in bytes (RFC 5321's path limit).
pub const MAX_EMAIL_BYTES: usize = 254;
/// Longest password, in characters.
pub const MAX_PASSWORD_CHARS: usize = 128;
/// Longest display name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Highest price, in minor units (10,000.00).
pub const MAX_PRICE_MINOR: i64 = 1_000_000;
/// One day.
pub const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// The stock of one stocked film.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Availability {
    /// The film.
    pub movie_id: MovieId,
    /// Copies owned.
    pub copies_owned: i32,
    /// Copies on the shelf.
    pub copies_available: i32,
    /// Currency of both prices.
    pub currency: String,
    /// Rental price per day (also the late fee per day).
    pub rental_price_minor: i64,
    /// Purchase price.
    pub purchase_price_minor: i64,
    /// Bumped by every committed change.
    pub version: i64,
}

/// A request to set a film's stock and prices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    /// The film.
    pub movie_id: MovieId,
    /// Copies owned.
    pub copies_owned: i32,
    /// Currency of both prices.
    pub currency: String,
    /// Rental price per day.
    pub rental_price_minor: i64,
    /// Purchase price.
    pub purchase_price_minor: i64,
}

/// A rental.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rental {
    /// Id.
    pub id: RentalId,
    /// The customer.
    pub customer_id: AccountId,
    /// The film.
    pub movie_id: MovieId,
    /// Days rented for.
    pub days: i32,
    /// When rented.
    pub rented_at: SystemTime,
    /// When due back.
    pub due_at: SystemTime,
    /// When returned, if it was.
    pub returned_at: Option<SystemTime>,
    /// Currency of the amounts.
    pub currency: String,
    /// Price per day at the time of renting (the late fee per day).
    pub price_per_day_minor: i64,
    /// Price charged.
    pub price_minor: i64,
    /// Late fee charged on return.
    pub late_fee_minor: i64,
    /// Idempotency key.
    pub request_id: String,
}

/// A purchase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purchase {
    /// Id.
    pub id: PurchaseId,
    /// The buyer.
    pub customer_id: AccountId,
    /// The film.
    pub movie_id: MovieId,
    /// Currency.
    pub currency: String,
    /// Price paid.
    pub price_minor: i64,
    /// When.
    pub purchased_at: SystemTime,
    /// Idempotency key.
    pub request_id: String,
}

/// An account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Id.
    pub id: AccountId,
    /// Email, unique case-insensitively.
    pub email: String,
    /// Display name.
    pub name: String,
    /// Customer or staff.
    pub role: Role,
    /// When created.
    pub created_at: SystemTime,
    /// Bumped by every sign-out and role change; refresh tokens carry the version they were
    /// issued at, and an older one is refused.
    pub session_version: i64,
}

/// The late fee for returning at `returned_at` a rental due at `due_at`: the daily price for every
/// day started after the due date. Returning on time (or early) costs nothing.
pub fn late_fee(due_at: SystemTime, returned_at: SystemTime, price_per_day_minor: i64) -> i64 {
    match returned_at.duration_since(due_at) {
        Ok(late) if !late.is_zero() => {
            let days = late.as_secs().div_ceil(DAY.as_secs()).max(1);
            (days as i64).saturating_mul(price_per_day_minor)
        }
        _ => 0,
    }
}

/// Checks a client request id.
pub fn check_request_id(request_id: &str) -> Result<String, Invalid> {
    let trimmed = request_id.trim();
    if trimmed.is_empty() {
        return Err(Invalid::new("request_id is required (a client-chosen id, e.g. a UUID)"));
    }
    if trimmed.chars().count() > MAX_REQUEST_ID_CHARS {
        return Err(Invalid(format!(
            "request_id is longer than {MAX_REQUEST_ID_CHARS} characters"
        )));
    }
    Ok(trimmed.to_owned())
}

/// Checks a number of rental days.
pub fn check_days(days: i32) -> Result<i32, Invalid> {
    if (1..=MAX_RENTAL_DAYS).contains(&days) {
        Ok(days)
    } else {
        Err(Invalid(format!("days must be between 1 and {MAX_RENTAL_DAYS}, not {days}")))
    }
}

/// Checks an ISO 4217-shaped currency code.
pub fn check_currency(code: &str) -> Result<String, Invalid> {
    if code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(code.to_owned())
    } else {
        Err(Invalid(format!(
            "currency_code {code:?} is not a three-letter ISO 4217 code like \"EUR\""
        )))
    }
}

/// Checks a price.
pub fn check_price(name: &str, minor: i64) -> Result<i64, Invalid> {
    if (0..=MAX_PRICE_MINOR).contains(&minor) {
        Ok(minor)
    } else {
        Err(Invalid(format!(
            "{name} must be between 0 and {MAX_PRICE_MINOR} minor units, not {minor}"
        )))
    }
}

/// Checks and normalises an email address (trimmed; compared case-insensitively by the store).
pub fn check_email(email: &str) -> Result<String, Invalid> {
    let email = email.trim();
    if email.is_empty() {
        return Err(Invalid::new("email is required"));
    }
    if email.len() > MAX_EMAIL_BYTES {
        return Err(Invalid(format!("email is longer than {MAX_EMAIL_BYTES} characters")));
    }
    let valid = match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !email.chars().any(|c| c.is_whitespace() || c.is_control())
                // Quoting, lists and routes (`"a b"@x`, `a,b@x`, `<a@x>`): one plain mailbox only.
                && !email.contains([',', ';', '<', '>', '(', ')', '"', '[', ']', '\\', ':'])
                // And one the mail sender can address (no `a..b@x`): Register mails it.
                && email.parse::<lettre::Address>().is_ok()
                && videostore_kit::text::hidden_character(email).is_none()
                && !domain.contains('@')
        }
        None => false,
    };
    if valid {
        Ok(email.to_owned())
    } else {
        Err(Invalid(format!("{email:?} is not an email address")))
    }
}

/// Checks a display name.
pub fn check_name(name: &str) -> Result<String, Invalid> {
    let name = name.trim();
    if name.is_empty() {
        return Err(Invalid::new("name is required"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(Invalid(format!("name is longer than {MAX_NAME_CHARS} characters")));
    }
    if name.chars().any(char::is_control) {
        return Err(Invalid::new("name must not contain control characters"));
    }
    if let Some(hidden) = videostore_kit::text::hidden_character(name) {
        return Err(Invalid(videostore_kit::text::hidden_character_message("name", hidden)));
    }
    Ok(name.to_owned())
}

/// A password as it is hashed and compared: Unicode NFKC, so the same password typed on
/// another keyboard or system (composed or decomposed accents, full-width digits) matches.
pub fn normalize_password(password: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    password.nfkc().collect()
}

/// Checks a new password and returns it normalized ([`normalize_password`]): 8 to 128
/// characters (in characters, so any script works), not only spaces, and not one of the most
/// common passwords (the first guesses of anyone trying).
pub fn check_password(password: &str) -> Result<String, Invalid> {
    let password = normalize_password(password);
    let chars = password.chars().count();
    if chars < 8 {
        return Err(Invalid::new("password must be at least 8 characters long"));
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(Invalid(format!(
            "password must be at most {MAX_PASSWORD_CHARS} characters long"
        )));
    }
    if password.trim().is_empty() {
        return Err(Invalid::new("password must not be only spaces"));
    }
    if is_common_password(&password) {
        return Err(Invalid::new(
            "this password is one of the most common ones, tried first by anyone guessing; \
             choose another",
        ));
    }
    Ok(password)
}

/// Whether `password` (any case) is on the list of the most common passwords.
fn is_common_password(password: &str) -> bool {
    static COMMON: std::sync::OnceLock<std::collections::HashSet<&'static str>> =
        std::sync::OnceLock::new();
    let common = COMMON.get_or_init(|| {
        include_str!("common-passwords.txt")
            .lines()
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .collect()
    });
    common.contains(password.to_lowercase().as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_fee_on_time_and_a_day_per_day_started_after() {
        let due = SystemTime::UNIX_EPOCH + DAY * 100;
        assert_eq!(late_fee(due, due - DAY, 250), 0);
        assert_eq!(late_fee(due, due, 250), 0);
        assert_eq!(late_fee(due, due + Duration::from_secs(1), 250), 250);
        assert_eq!(late_fee(due, due + DAY, 250), 250);
        assert_eq!(late_fee(due, due + DAY + Duration::from_secs(1), 250), 500);
        assert_eq!(late_fee(due, due + DAY * 3, 250), 750);
    }

    #[test]
    fn inputs_are_checked() {
        assert!(check_days(0).is_err());
        assert!(check_days(91).is_err());
        assert_eq!(check_days(3), Ok(3));
        assert!(check_request_id("  ").is_err());
        assert!(check_request_id(&"x".repeat(101)).is_err());
        assert!(check_currency("eur").is_err());
        assert!(check_currency("EURO").is_err());
        assert_eq!(check_currency("EUR"), Ok("EUR".into()));
        assert!(check_email("no-at-sign").is_err());
        assert!(check_email("a@b").is_err());
        for listed in ["a,b@x.com", "a@x.com;b@y.com", "<a@x.com>", "\"a b\"@x.com", "a(c)@x.com"] {
            assert!(check_email(listed).is_err(), "{listed}");
        }
        assert!(check_email("o'brien+films@example.co.uk").is_ok());
        assert!(check_email("zoë@example.com").is_ok(), "international addresses are mailed");
        assert!(check_email("a..b@example.com").is_err(), "no mail could reach it");
        assert_eq!(check_email(" Ann@Example.com "), Ok("Ann@Example.com".into()));
        assert!(check_password("short").is_err());
        assert!(check_password("long enough").is_ok());
        for common in ["password", "Password1", "12345678", "QWERTYUIOP", "iloveyou"] {
            let refused = check_password(common).unwrap_err();
            assert!(refused.to_string().contains("most common"), "{common}: {refused}");
        }
        assert!(check_password("          ").unwrap_err().to_string().contains("only spaces"));
        // Composed and decomposed accents, full-width digits: one password.
        assert_eq!(check_password("caf\u{e9} au lait").unwrap(), "café au lait");
        assert_eq!(check_password("cafe\u{301} au lait").unwrap(), "café au lait");
        assert_eq!(normalize_password("ｐａｓｓ１２３４５"), "pass12345");
        assert!(check_name("Ann\u{202E}nimda").unwrap_err().to_string().contains("U+202E"));
        assert!(check_price("price", -1).is_err());
    }
}
