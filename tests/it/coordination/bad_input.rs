//! Bad input on `weir coordinator`'s port closes that connection and nothing else: the tree
//! keeps its data and other clients keep working.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weir::actors::coordination::wire::{
    encode_frame, ClientMessage, ServerMessage, MAX_FRAME_LEN, PROTOCOL_VERSION,
};
use weir::actors::coordination::{self, CreateMode, Request};

use super::harness::{Kind, Service, CHROOT};

/// Sends `bytes` on a fresh connection and expects the server to close it.
async fn closes_connection(port: u16, bytes: &[u8]) {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    // The peer may close while we are still writing: that is the expected outcome too.
    let _ = stream.write_all(bytes).await;
    let mut sink = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut sink)).await;
    assert!(
        read.is_ok(),
        "connection still open after {} bad bytes",
        bytes.len()
    );
}

fn frame(message: &ClientMessage) -> Vec<u8> {
    encode_frame(message).expect("encode")
}

fn connect_frame() -> Vec<u8> {
    frame(&ClientMessage::Connect {
        session_id: None,
        timeout_ms: 2000,
    })
}

#[actix::test]
async fn bad_input_closes_only_that_connection_and_leaves_the_tree_intact() {
    let service = Service::start(Kind::Remote).await;
    let (client, _) = service.client(Duration::from_secs(2)).await;
    client
        .create("/keep", b"safe", CreateMode::Persistent)
        .await
        .unwrap();
    let port = service.port();

    // Garbage instead of a frame.
    closes_connection(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    // A length beyond the limit (no body is ever read).
    closes_connection(port, &((MAX_FRAME_LEN as u32) + 1).to_be_bytes()).await;
    // A zero-length frame.
    closes_connection(port, &[0, 0, 0, 0]).await;
    // Another protocol version.
    let mut wrong_version = connect_frame();
    wrong_version[4] = PROTOCOL_VERSION + 1;
    closes_connection(port, &wrong_version).await;
    // A well-framed message of a kind the server does not know (a server message).
    closes_connection(
        port,
        &encode_frame(&ServerMessage::Ack {
            xid: 1,
            result: Ok(()),
        })
        .unwrap(),
    )
    .await;
    // Valid msgpack that is not a message.
    let mut not_a_message = vec![0, 0, 0, 3, PROTOCOL_VERSION, 0x92, 0x01];
    not_a_message[3] = (not_a_message.len() - 4) as u8;
    closes_connection(port, &not_a_message).await;
    // A request before Connect, and a second Connect after it.
    closes_connection(
        port,
        &frame(&ClientMessage::Request {
            xid: 1,
            request: Request::Delete {
                path: "/keep".into(),
                version: None,
            },
        }),
    )
    .await;
    let mut twice = connect_frame();
    twice.extend(connect_frame());
    closes_connection(port, &twice).await;
    // A session that sends garbage after a good request: the request counted, then closed.
    let mut then_garbage = connect_frame();
    then_garbage.extend(frame(&ClientMessage::Request {
        xid: 1,
        request: Request::Create {
            path: format!("{CHROOT}/before-garbage"),
            data: vec![],
            mode: CreateMode::Persistent,
        },
    }));
    then_garbage.extend([0xff; 16]);
    closes_connection(port, &then_garbage).await;

    // The tree is intact and the old client still works; new clients are still served.
    assert_eq!(client.get_data("/keep", false).await.unwrap().0, b"safe");
    let (other, _) = service.client(Duration::from_secs(2)).await;
    assert_eq!(
        other.get_children("/", false).await.unwrap(),
        vec!["before-garbage", "keep"]
    );
    other.close().await.unwrap();
    client.close().await.unwrap();
}

#[actix::test]
async fn client_of_a_missing_coordinator_gets_connection_loss() {
    let port = crate::support::free_port();
    let result = coordination::connect(
        Some(&format!("weir://127.0.0.1:{port}")),
        Duration::from_secs(1),
        None,
    )
    .await;
    assert!(matches!(
        result,
        Err(coordination::CoordinationError::ConnectionLoss)
    ));
}
