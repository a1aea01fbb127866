// Copyright AGNTCY Contributors (https://github.com/agntcy)
// SPDX-License-Identifier: Apache-2.0

pub use agntcy_slim_proto::dataplane::proto as dataplane;
