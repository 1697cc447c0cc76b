//! Sans-IO TDS 7.4 wire codec [MS-TDS]: nothing here touches a socket.
pub mod error;
pub mod packet;
pub mod read;

pub use error::DecodeError;
pub use packet::{PacketHeader, PacketType, Status};
