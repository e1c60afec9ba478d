//! Authentication (passwords, sessions, CSRF, login throttling) and authorization.

pub mod middleware;
pub mod password;
pub mod privilege;
pub mod ratelimit;
pub mod session;

pub use middleware::AuthUser;
pub use privilege::{authorize, Privilege};
