// Copyright AGNTCY Contributors (https://github.com/agntcy)
// SPDX-License-Identifier: Apache-2.0

//! gRPC bindings for data plane service.
pub mod proto;

pub use proto::dataplane::v1::ApplicationPayload;
pub use proto::dataplane::v1::CommandPayload;
pub use proto::dataplane::v1::Content;
pub use proto::dataplane::v1::DiscoveryReplyPayload;
pub use proto::dataplane::v1::DiscoveryRequestPayload;
pub use proto::dataplane::v1::EncodedName;
pub use proto::dataplane::v1::GroupAckPayload;
pub use proto::dataplane::v1::GroupNackPayload;
pub use proto::dataplane::v1::GroupProposalPayload;
pub use proto::dataplane::v1::GroupUpdateOp;
pub use proto::dataplane::v1::GroupUpdatePayload;
pub use proto::dataplane::v1::GroupWelcomePayload;
pub use proto::dataplane::v1::HeaderIntegrityAad;
pub use proto::dataplane::v1::JoinReplyPayload;
pub use proto::dataplane::v1::JoinRequestPayload;
pub use proto::dataplane::v1::LeaveReplyPayload;
pub use proto::dataplane::v1::LeaveRequestPayload;
pub use proto::dataplane::v1::Link as ProtoLink;
pub use proto::dataplane::v1::LinkNegotiationPayload;
pub use proto::dataplane::v1::Message as ProtoMessage;
pub use proto::dataplane::v1::MlsPayload;
pub use proto::dataplane::v1::MlsSettings as ProtoMlsSettings;
pub use proto::dataplane::v1::Name as ProtoName;
pub use proto::dataplane::v1::NameId;
pub use proto::dataplane::v1::Participant;
pub use proto::dataplane::v1::ParticipantSettings;
pub use proto::dataplane::v1::ParticipantState;
pub use proto::dataplane::v1::Publish as ProtoPublish;
pub use proto::dataplane::v1::SessionHeader;
pub use proto::dataplane::v1::SessionMessageType as ProtoSessionMessageType;
pub use proto::dataplane::v1::SessionType as ProtoSessionType;
pub use proto::dataplane::v1::SlimHeader;
pub use proto::dataplane::v1::StringName;
pub use proto::dataplane::v1::Subscribe as ProtoSubscribe;
pub use proto::dataplane::v1::SubscriptionAck as ProtoSubscriptionAck;
pub use proto::dataplane::v1::Unsubscribe as ProtoUnsubscribe;
#[cfg(not(target_arch = "wasm32"))]
pub use proto::dataplane::v1::data_plane_service_client::DataPlaneServiceClient;
#[cfg(not(target_arch = "wasm32"))]
pub use proto::dataplane::v1::data_plane_service_server::DataPlaneServiceServer;
pub use proto::dataplane::v1::link::LinkType as ProtoLinkType;
pub use proto::dataplane::v1::message::MessageType;
pub use proto::dataplane::v1::message::MessageType::Link as ProtoLinkMessageType;
pub use proto::dataplane::v1::message::MessageType::Publish as ProtoPublishType;
pub use proto::dataplane::v1::message::MessageType::Subscribe as ProtoSubscribeType;
pub use proto::dataplane::v1::message::MessageType::SubscriptionAck as ProtoSubscriptionAckType;
pub use proto::dataplane::v1::message::MessageType::Unsubscribe as ProtoUnsubscribeType;
