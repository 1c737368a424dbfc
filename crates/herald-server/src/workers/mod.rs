//! Background work: fan-out of accepted notifications, campaigns, push sending, live event
//! dispatch, housekeeping.

pub mod campaigns;
pub mod fanout;
pub mod housekeeping;
pub mod policy;
pub mod push;
pub mod shared_entry;
pub mod staged_push;
