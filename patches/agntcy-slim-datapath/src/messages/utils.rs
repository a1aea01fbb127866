// Copyright AGNTCY Contributors (https://github.com/agntcy)
// SPDX-License-Identifier: Apache-2.0

pub use agntcy_slim_proto::CommandPayloadBuilder;
pub use agntcy_slim_proto::DEFAULT_TTL;
pub use agntcy_slim_proto::DELETE_GROUP;
pub use agntcy_slim_proto::FALSE_VAL;
pub use agntcy_slim_proto::LEAVE_REPLY_SENT;
pub use agntcy_slim_proto::LEAVING_SESSION;
pub use agntcy_slim_proto::MAX_PUBLISH_ID;
pub use agntcy_slim_proto::MessageError;
pub use agntcy_slim_proto::PUBLISH_TO;
pub use agntcy_slim_proto::ProtoMessageBuilder;
pub use agntcy_slim_proto::SlimHeaderFlags;
pub use agntcy_slim_proto::TRUE_VAL;
