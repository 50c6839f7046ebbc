//! Who is calling: tokens ([`token`], and the roles tokens are created against,
//! [`token_role`]), and the auth methods that issue them ([`approle`],
//! [`jwt`]), with the failed-login [`lockout`] an auth method may use.

pub mod approle;
pub mod jwt;
pub mod lockout;
pub mod token;
pub mod token_role;
