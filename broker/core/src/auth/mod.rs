//! Who is calling: tokens ([`token`]), and the auth methods that issue them ([`approle`],
//! [`jwt`]).

pub mod approle;
pub mod jwt;
pub mod token;
