//! Agent frames (`agent-protocol/src/frame.rs`): the JSON text of one
//! WebSocket message between the agent gateway and a customer-run agent.

use keybroker_agent_protocol::{
    decode, encode, xks::DecryptRequest, xks::EncryptRequest, xks::GetKeyMetadataRequest,
    xks::HealthRequest, Frame, OperationKind, ProtocolError, XksCall, MAX_FRAME_BYTES,
};

/// Decodes `data` as a frame; what decodes encodes to text that decodes the same.
pub fn agent_frame(data: &[u8]) {
    let Some(text) = crate::text(data) else {
        return;
    };
    match decode(text) {
        Ok(frame) => {
            let encoded = encode(&frame).unwrap();
            assert!(encoded.len() <= MAX_FRAME_BYTES);
            assert_eq!(decode(&encoded).unwrap(), frame);
            if let Frame::Response(response) = frame {
                replies(&response.result);
            }
        }
        // Errors never quote the frame (it may carry plaintext): none of these kinds holds
        // text from it.
        Err(ProtocolError::FrameTooLarge { size, .. }) => {
            assert!(size == text.len() && size > MAX_FRAME_BYTES)
        }
        Err(
            ProtocolError::NotJson { .. }
            | ProtocolError::UnknownType
            | ProtocolError::InvalidFields { .. },
        ) => {}
        Err(other) => panic!("decoding failed with {other:?}"),
    }
}

/// A reply is accepted for a request of its own kind, or of any kind when it is an error.
fn replies(reply: &keybroker_agent_protocol::Reply) {
    for kind in [
        OperationKind::GetKeyMetadata,
        OperationKind::Encrypt,
        OperationKind::Decrypt,
        OperationKind::Health,
    ] {
        let accepted = reply.clone().check(kind).is_ok();
        assert_eq!(accepted, reply.kind().is_none_or(|own| own == kind));
    }
    assert_eq!(
        GetKeyMetadataRequest::take_reply(reply.clone()).is_ok(),
        reply.clone().check(OperationKind::GetKeyMetadata).is_ok()
    );
    assert_eq!(
        EncryptRequest::take_reply(reply.clone()).is_ok(),
        reply.clone().check(OperationKind::Encrypt).is_ok()
    );
    assert_eq!(
        DecryptRequest::take_reply(reply.clone()).is_ok(),
        reply.clone().check(OperationKind::Decrypt).is_ok()
    );
    assert_eq!(
        HealthRequest::take_reply(reply.clone()).is_ok(),
        reply.clone().check(OperationKind::Health).is_ok()
    );
}
