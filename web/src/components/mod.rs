//! Small pieces shared by pages.

pub(crate) mod badge;
pub(crate) mod status;
