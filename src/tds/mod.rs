//! Sans-IO TDS 7.4 wire codec [MS-TDS]: nothing here touches a socket.
pub mod error;
pub mod login7;
pub mod packet;
pub mod prelogin;
pub mod read;
pub mod request;
pub mod token;

pub use error::DecodeError;
pub use packet::{PacketHeader, PacketType, Status};
