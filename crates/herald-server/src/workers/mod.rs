//! Background work: fan-out of accepted notifications, push sending, live event dispatch,
//! housekeeping.

pub mod fanout;
pub mod housekeeping;
pub mod policy;
pub mod push;
