//! Herald's domain: what a notification is, who receives it, where a reader stands in a feed,
//! and the rules a request must follow. No I/O lives here, so every rule is testable alone.

pub mod audience;
pub mod campaign;
pub mod channel;
pub mod device;
pub mod event;
pub mod limits;
pub mod names;
pub mod notification;
pub mod policy;
pub mod position;
pub mod publish;
pub mod time;
pub mod validation;

pub use campaign::{Audience, Campaign, CampaignState};
pub use device::{Device, DeviceRegistration, Platform, WebPushKeys};
pub use event::{EventBody, FeedEvent};
pub use limits::Limits;
pub use notification::{Channel, ChannelSet, Notification, NotificationView, Priority, Recipients};
pub use policy::{Category, Preferences, Reason};
pub use position::{Cursor, Position};
pub use publish::PublishRequest;
pub use validation::{FieldError, ValidationError};
