//! Every broker, partition replica, controller, coordination session and group coordinator is
//! an actix actor; each module here owns one actor kind and declares its messages beside it.
pub mod controller;
