use super::*;
use v5::mqttbytes::v5::{Publish, PublishProperties};

#[test]
fn the_oldest_unacked_message_survives_a_reconnect_until_acks_flow_again() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let mut ages = UnackedAges::default();
    assert_eq!(ages.oldest(), None);
    ages.received(at(0));
    ages.received(at(10));
    ages.received(at(20));
    ages.released(1);
    assert_eq!(ages.oldest(), Some(at(10)));
    // The connection drops; the broker redelivers on the next one.
    ages.new_connection();
    ages.received(at(500));
    assert_eq!(ages.oldest(), Some(at(10)), "still waiting since it first came");
    ages.released(1);
    assert_eq!(ages.oldest(), None);
}

fn token(epoch: u64, seq: u64) -> AckToken {
    AckToken { epoch, seq, pkid: seq as u16 + 1, qos: 1 }
}

#[test]
fn acks_of_an_earlier_connection_are_dropped_never_sent() {
    let mut unsent: VecDeque<AckToken> = [token(1, 0), token(1, 1), token(2, 0), token(2, 1)].into();
    let mut sent = Vec::new();
    // Between connections nothing is sent, and nothing is lost.
    assert_eq!(
        release_acks(2, false, &mut unsent, |t| {
            sent.push(*t);
            true
        }),
        2
    );
    assert!(sent.is_empty());
    assert_eq!(unsent, [token(2, 0), token(2, 1)]);
    // A full request queue keeps the rest for the next turn, in order.
    assert_eq!(
        release_acks(2, true, &mut unsent, |t| {
            sent.push(*t);
            sent.len() < 2
        }),
        1
    );
    assert_eq!(
        release_acks(2, true, &mut unsent, |t| {
            sent.push(*t);
            true
        }),
        1
    );
    assert_eq!(sent, [token(2, 0), token(2, 1), token(2, 1)]);
    // Connection 3 came before they went: dropped, not sent there.
    let mut unsent: VecDeque<AckToken> = [token(2, 2)].into();
    assert_eq!(release_acks(3, true, &mut unsent, |_| panic!("acked on the wrong connection")), 1);
}

#[test]
fn publishes_read_from_a_lost_connection_are_discarded_not_handed_out() {
    let publish_v4 = |pkid| {
        let mut p = rumqttc::Publish::new("city/x", rumqttc::QoS::AtLeastOnce, "{}");
        p.pkid = pkid;
        rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))
    };
    let (client, mut events) = rumqttc::AsyncClient::new(rumqttc::MqttOptions::new("t", "127.0.0.1", 1), 10);
    // rumqttc read three packets in one go, then the socket failed.
    events.state.events.extend([publish_v4(7), rumqttc::Event::Outgoing(rumqttc::Outgoing::PubAck(3)), publish_v4(8)]);
    let mut session = Session { events: EventLoop::V4(Box::new(events)), client: Client::V4(client) };
    assert_eq!(session.discard_stale(), 2);
    let EventLoop::V4(events) = &session.events else { unreachable!() };
    assert!(events.state.events.is_empty());

    let (client, mut events) = v5::AsyncClient::new(v5::MqttOptions::new("t", "127.0.0.1", 1), 10);
    let mut p = Publish::new("city/x", v5::mqttbytes::QoS::AtLeastOnce, "{}", None);
    p.pkid = 9;
    events.state.events.push_back(v5::Event::Incoming(v5::Incoming::Publish(p)));
    let mut session = Session { events: EventLoop::V5(Box::new(events)), client: Client::V5(client) };
    assert_eq!(session.discard_stale(), 1);
    assert_eq!(session.discard_stale(), 0);
}

#[tokio::test]
async fn held_messages_go_on_in_order_and_only_qos0_survive_a_lost_connection() {
    let message = |n: u64, ack: bool| Inbound {
        topic: format!("t/{n}"),
        payload: Bytes::new(),
        content_type: None,
        received_at: Utc::now(),
        received: Instant::now(),
        ack: ack.then(|| token(1, n)),
        held_bytes: HeldBytes::default(),
    };
    let (tx, mut rx) = mpsc::channel(2);
    let mut held: VecDeque<Inbound> = (0..5).map(|n| message(n, n != 3)).collect();
    forward_held(&tx, &mut held);
    assert_eq!(held.len(), 3, "the queue took two");
    assert_eq!(rx.recv().await.unwrap().topic, "t/0");
    forward_held(&tx, &mut held);
    assert_eq!(rx.recv().await.unwrap().topic, "t/1");
    assert_eq!(rx.recv().await.unwrap().topic, "t/2");
    assert_eq!(drop_stale_held(&mut held), 1, "t/4 needs an ack: the broker redelivers it");
    assert_eq!(held.iter().map(|m| m.topic.as_str()).collect::<Vec<_>>(), ["t/3"]);
}

#[test]
fn the_content_type_comes_from_the_publish_properties() {
    let with = |ct: Option<&str>| {
        let properties = PublishProperties { content_type: ct.map(str::to_string), ..Default::default() };
        let mut publish =
            Publish::new("city/water_level/kh-wl-0001", v5::mqttbytes::QoS::AtLeastOnce, "[]", Some(properties));
        content_type(&mut publish)
    };
    assert_eq!(with(Some("application/senml+json")).as_deref(), Some("application/senml+json"));
    assert_eq!(with(None), None);
    assert_eq!(with(Some(&"x".repeat(1000))), None);
    let mut bare = Publish::new("t", v5::mqttbytes::QoS::AtLeastOnce, "[]", None);
    assert_eq!(content_type(&mut bare), None);
}
