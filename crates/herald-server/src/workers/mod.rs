//! Background work: fan-out of accepted notifications, live event dispatch, housekeeping.

pub mod fanout;
pub mod housekeeping;
