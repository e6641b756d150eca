//! Properties every frame, name and identity must hold: round trips, incremental
//! decoding, and no panics on arbitrary input.

use bytes::Bytes;
use bytes::{BufMut, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use relay_proto::{
    Accepted, AgentInfo, AgentName, Capabilities, CertSerial, Channel, CidPrefix, Data,
    DecodeError, Destination, Direct, Domain, Eof, ErrorCode, Exit, Forwarded, Frame, FrameType,
    GoAway, Grant, Host, Identity, List, LoginCert, LoginHello, LoginOffer, LoginToken, Name, Open,
    Path, ProviderInfo, ProviderKind, Reach, Refused, Register, Registered, Resize, Role, Signal,
    StreamKind, TargetName, HEADER_LEN, MAX_FRAME_LEN,
};

// ---- strategies ------------------------------------------------------------
// Sizes stay small (≤ 8 list items, ≤ 64-char strings, ≤ 200-char messages)
// so no generated frame comes near MAX_FRAME_LEN.

/// A valid name: a letter or digit, then up to 62 of `a-z 0-9 - .`.
fn name() -> impl Strategy<Value = Name> {
    "[a-z0-9][a-z0-9.-]{0,62}"
        .prop_filter_map("the pattern is the naming rule", |s| Name::try_from(s).ok())
}

fn agent_name() -> impl Strategy<Value = AgentName> {
    name().prop_map(AgentName::from)
}

fn target_name() -> impl Strategy<Value = TargetName> {
    name().prop_map(TargetName::from)
}

fn role() -> impl Strategy<Value = Role> {
    prop::sample::select(Role::ALL.to_vec())
}

fn identity() -> impl Strategy<Value = Identity> {
    (role(), name()).prop_map(|(role, name)| Identity::new(role, name))
}

fn capabilities() -> impl Strategy<Value = Capabilities> {
    any::<u32>().prop_map(Capabilities)
}

fn stream_kind() -> impl Strategy<Value = StreamKind> {
    prop_oneof![
        Just(StreamKind::Tcp),
        (
            "[!-~]{0,64}",
            any::<u16>(),
            any::<u16>(),
            vec("[^\0]{0,64}", 0..=4)
        )
            .prop_map(|(term, cols, rows, argv)| StreamKind::Shell {
                term,
                cols,
                rows,
                argv
            }),
        vec("[^\0]{0,64}", 1..=8).prop_map(|argv| StreamKind::Exec { argv }),
        destination().prop_map(|dest| StreamKind::Socks { dest }),
        "([A-Za-z0-9_-][A-Za-z0-9._-]{0,40})?".prop_map(|name| StreamKind::Recording { name }),
    ]
}

/// Any reach: up to 8 targets, any session bits.
fn reach() -> impl Strategy<Value = Reach> {
    (vec(target_name(), 0..=8), any::<u32>()).prop_map(|(targets, sessions)| Reach {
        targets,
        sessions: Capabilities(sessions),
    })
}

/// A valid domain name (lower and upper case, up to 4 labels).
fn domain() -> impl Strategy<Value = Domain> {
    "[a-zA-Z0-9_]([a-zA-Z0-9_-]{0,20}[a-zA-Z0-9_])?(\\.[a-zA-Z0-9_]([a-zA-Z0-9_-]{0,20}[a-zA-Z0-9_])?){0,3}\\.?"
        .prop_filter_map("the pattern is the host name rule", |s| {
            Domain::try_from(s.as_str()).ok()
        })
}

fn destination() -> impl Strategy<Value = Destination> {
    let host = prop_oneof![
        any::<std::net::Ipv4Addr>().prop_map(|ip| Host::Ip(ip.into())),
        any::<std::net::Ipv6Addr>().prop_map(|ip| Host::Ip(ip.into())),
        domain().prop_map(Host::Domain),
    ];
    (host, any::<u16>()).prop_map(|(host, port)| Destination { host, port })
}

fn open() -> impl Strategy<Value = Open> {
    (agent_name(), target_name(), stream_kind()).prop_map(|(agent, target, kind)| Open {
        agent,
        target,
        kind,
    })
}

fn channel() -> impl Strategy<Value = Channel> {
    prop::sample::select(Channel::ALL.to_vec())
}

/// Any routable connection-ID prefix.
fn cid_prefix() -> impl Strategy<Value = CidPrefix> {
    any::<[u8; 4]>().prop_map(CidPrefix::routable)
}

/// Any frame. Keep [`covers_every_variant`] beside it.
fn any_frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (
            any::<u16>(),
            capabilities(),
            vec(target_name(), 0..=8),
            proptest::option::of(cid_prefix())
        )
            .prop_map(|(version, capabilities, targets, prefix)| Register {
                version,
                capabilities,
                targets,
                prefix
            }
            .into()),
        (agent_name(), cid_prefix()).prop_map(|(agent, prefix)| Direct { agent, prefix }.into()),
        (cid_prefix(), proptest::option::of(reach())).prop_map(|(prefix, reach)| Path {
            prefix,
            reach
        }
        .into()),
        (
            identity(),
            vec(any::<u8>(), 1..=32),
            vec(target_name(), 0..=8),
            any::<u32>()
        )
            .prop_filter_map(
                "a serial is 1..=32 bytes",
                |(caller, serial, targets, sessions)| {
                    Some(
                        Grant {
                            caller,
                            serial: CertSerial::from_bytes(&serial)?,
                            reach: Reach {
                                targets,
                                sessions: Capabilities(sessions),
                            },
                        }
                        .into(),
                    )
                }
            ),
        (
            any::<u16>(),
            capabilities(),
            proptest::option::of(any::<u64>())
        )
            .prop_map(|(version, capabilities, instance)| Registered {
                version,
                capabilities,
                instance,
            }
            .into()),
        any::<u32>().prop_map(|reconnect_in_ms| GoAway { reconnect_in_ms }.into()),
        open().prop_map(Frame::from),
        (identity(), open()).prop_map(|(caller, open)| Forwarded { caller, open }.into()),
        Just(Accepted.into()),
        (any::<u32>(), ".{0,200}").prop_map(|(code, message)| Refused::new(
            ErrorCode(code),
            message
        )
        .into()),
        Just(List.into()),
        (
            agent_name(),
            any::<u16>(),
            vec(target_name(), 0..=8),
            any::<u32>()
        )
            .prop_map(|(agent, instances, targets, sessions)| AgentInfo {
                agent,
                instances,
                targets,
                sessions: Capabilities(sessions),
            }
            .into()),
        (channel(), vec(any::<u8>(), 0..=300)).prop_map(|(channel, bytes)| Data {
            channel,
            bytes: Bytes::from(bytes)
        }
        .into()),
        channel().prop_map(|channel| Eof { channel }.into()),
        (any::<u16>(), any::<u16>()).prop_map(|(cols, rows)| Resize { cols, rows }.into()),
        any::<u8>().prop_map(|signal| Signal { signal }.into()),
        prop_oneof![
            any::<i32>().prop_map(Exit::Code),
            any::<u8>().prop_map(Exit::Signal)
        ]
        .prop_map(Frame::from),
        Just(LoginHello.into()),
        (
            ".{0,64}",
            vec(
                (name(), prop::bool::ANY, ".{0,64}", ".{0,32}", ".{0,64}"),
                0..4
            )
        )
            .prop_map(|(nonce, providers)| LoginOffer {
                nonce,
                providers: providers
                    .into_iter()
                    .map(|(name, people, issuer, client_id, scopes)| ProviderInfo {
                        name,
                        kind: if people {
                            ProviderKind::People
                        } else {
                            ProviderKind::Workload
                        },
                        issuer,
                        client_id,
                        scopes,
                    })
                    .collect(),
            }
            .into()),
        (name(), ".{0,600}", ".{0,300}", any::<u32>()).prop_map(
            |(provider, token, csr, lifetime_s)| LoginToken {
                provider,
                token,
                csr,
                lifetime_s
            }
            .into()
        ),
        ".{0,600}".prop_map(|chain| LoginCert { chain }.into()),
    ]
}

/// Fails to compile when `Frame` gains a variant: add it to [`any_frame`]
/// first, then here. Called from `round_trip`.
fn covers_every_variant(frame: &Frame) {
    match frame {
        Frame::Register(_)
        | Frame::Registered(_)
        | Frame::GoAway(_)
        | Frame::Open(_)
        | Frame::Forwarded(_)
        | Frame::Accepted(_)
        | Frame::Refused(_)
        | Frame::List(_)
        | Frame::AgentInfo(_)
        | Frame::Direct(_)
        | Frame::Path(_)
        | Frame::Grant(_)
        | Frame::Data(_)
        | Frame::Eof(_)
        | Frame::Resize(_)
        | Frame::Signal(_)
        | Frame::Exit(_)
        | Frame::LoginHello(_)
        | Frame::LoginOffer(_)
        | Frame::LoginToken(_)
        | Frame::LoginCert(_) => {}
    }
}

/// Decodes every complete frame in `buf`, failing the case on an error.
fn drain(buf: &mut BytesMut, out: &mut Vec<Frame>) -> Result<(), TestCaseError> {
    while let Some(frame) = Frame::decode(buf)? {
        out.push(frame);
    }
    Ok(())
}

/// The naming rule, written without the crate's code or a regex.
fn follows_name_rule(s: &str) -> bool {
    let bytes = s.as_bytes();
    let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.';
    (1..=63).contains(&bytes.len())
        && bytes.iter().all(|&b| allowed(b))
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
}

/// Strings that often come close to a valid name, plus arbitrary ones.
fn name_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9._ /-]{0,70}",
        "[a-z0-9][a-z0-9.-]{60,64}",
        any::<String>(),
    ]
}

// ---- properties -------------------------------------------------------------

proptest! {
    #[test]
    fn round_trip(frame in any_frame()) {
        covers_every_variant(&frame);
        let mut buf = BytesMut::new();
        frame.encode(&mut buf);
        prop_assert_eq!(buf.len(), frame.encoded_len());
        prop_assert!(frame.payload_len() <= MAX_FRAME_LEN);
        prop_assert_eq!(&frame.to_bytes()[..], &buf[..]);
        prop_assert_eq!(Frame::decode(&mut buf)?, Some(frame));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn split_anywhere(frames in vec(any_frame(), 1..8), at in any::<Index>()) {
        let mut wire = BytesMut::new();
        for frame in &frames {
            frame.encode(&mut wire);
        }
        let at = at.index(wire.len() + 1);
        let mut buf = BytesMut::from(&wire[..at]);
        let mut decoded = Vec::new();
        drain(&mut buf, &mut decoded)?;
        buf.extend_from_slice(&wire[at..]);
        drain(&mut buf, &mut decoded)?;
        prop_assert_eq!(decoded, frames);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn prefix_is_incomplete(frame in any_frame(), at in any::<Index>()) {
        let wire = frame.to_bytes();
        let prefix = &wire[..at.index(wire.len())];
        let mut buf = BytesMut::from(prefix);
        prop_assert_eq!(Frame::decode(&mut buf), Ok(None));
        prop_assert_eq!(&buf[..], prefix);
    }

    #[test]
    fn junk_never_panics(bytes in vec(any::<u8>(), 0..4096)) {
        let mut buf = BytesMut::from(&bytes[..]);
        // Each Ok(Some) consumes at least the header, so this ends.
        while let Ok(Some(_)) = Frame::decode(&mut buf) {}
    }

    #[test]
    fn junk_payload_never_panics(ty in prop::sample::select(vec![
        0x01u8, 0x02, 0x03, 0x10, 0x11, 0x12, 0x13, 0x14, 0x20, 0x21, 0x30, 0x31, 0x32, 0x33, 0x34,
        0x40, 0x41, 0x42, 0x43,
    ]), payload in vec(any::<u8>(), 0..512)) {
        // Valid headers around arbitrary payloads reach every field parser.
        let mut buf = BytesMut::new();
        buf.put_u8(ty);
        buf.put_u32(payload.len() as u32);
        buf.put_slice(&payload);
        let result = Frame::decode(&mut buf);
        prop_assert!(!matches!(result, Ok(None)));
        prop_assert!(buf.is_empty());
        if let Ok(Some(frame)) = result {
            // What decodes re-encodes to the same bytes: one encoding per frame.
            let mut again = BytesMut::new();
            frame.encode(&mut again);
            prop_assert_eq!(&again[HEADER_LEN..], &payload[..]);
        }
    }

    #[test]
    fn oversize_length_is_rejected_before_buffering(
        ty in prop::sample::select(vec![0x01u8, 0x02, 0x03, 0x10, 0x11, 0x12, 0x13, 0x14, 0x20, 0x21, 0x30, 0x31, 0x32, 0x33, 0x34]),
        len in (MAX_FRAME_LEN as u32 + 1)..=u32::MAX,
    ) {
        let mut buf = BytesMut::new();
        buf.put_u8(ty);
        buf.put_u32(len);
        prop_assert_eq!(
            Frame::decode(&mut buf),
            Err(DecodeError::TooLarge { len: u64::from(len), max: MAX_FRAME_LEN as u64 })
        );
    }

    #[test]
    fn unknown_type_rejected(ty in any::<u8>(), rest in vec(any::<u8>(), 0..16)) {
        prop_assume!(FrameType::try_from(ty).is_err());
        let mut buf = BytesMut::new();
        buf.put_u8(ty);
        buf.put_slice(&rest);
        prop_assert_eq!(Frame::decode(&mut buf), Err(DecodeError::UnknownType(ty)));
    }

    #[test]
    fn valid_names_round_trip(name in name()) {
        let s = name.as_str().to_owned();
        prop_assert_eq!(Name::try_from(s.as_str()), Ok(name.clone()));
        prop_assert_eq!(s.parse::<Name>(), Ok(name.clone()));
        prop_assert_eq!(Name::try_from(s.clone()), Ok(name.clone()));
        prop_assert_eq!(name.to_string(), s);
    }

    #[test]
    fn names_are_accepted_iff_they_follow_the_rule(s in name_like()) {
        let result = Name::try_from(s.as_str());
        prop_assert_eq!(result.is_ok(), follows_name_rule(&s), "{:?} -> {:?}", s, result);
        if let Err(err) = result {
            // Messages name the value; a long one is abbreviated.
            let msg = err.to_string();
            if s.is_empty() {
                prop_assert!(msg.contains("empty"), "{}", msg);
            } else if s.len() > Name::MAX_LEN {
                prop_assert!(msg.contains(&format!("{} bytes long", s.len())), "{}", msg);
            } else {
                prop_assert!(msg.contains(&format!("{s:?}")), "{}", msg);
            }
        }
    }

    #[test]
    fn identity_uri_round_trips(relay in name(), id in identity()) {
        let uri = id.to_uri(&relay);
        prop_assert_eq!(Identity::from_uri(&uri), Ok((relay, id)));
    }

    #[test]
    fn identity_from_uri_never_panics(s in prop_oneof![
        "relay://[a-zA-Z0-9./:%-]{0,40}",
        any::<String>(),
    ]) {
        if let Err(err) = Identity::from_uri(&s) {
            prop_assert!(err.to_string().contains(&format!("{s:?}")), "{}", err);
        }
    }
}

/// A recording's name is a plain file name: an `Open` naming a path (or a
/// hidden file, or too long a name) does not decode, so no agent reads
/// outside its recordings folder.
#[test]
fn a_recording_name_that_is_a_path_does_not_decode() {
    let long = "x".repeat(StreamKind::MAX_RECORDING_NAME + 1);
    for bad in [
        "../secret.cast",
        ".hidden",
        "a/b.cast",
        "a\\b",
        "sp ace",
        &long,
    ] {
        let open = Open {
            agent: AgentName::from(Name::try_from("edge").unwrap_or_else(|e| panic!("{e}"))),
            target: TargetName::from(Name::try_from("recording").unwrap_or_else(|e| panic!("{e}"))),
            kind: StreamKind::Recording {
                name: bad.to_owned(),
            },
        };
        let mut buf = BytesMut::from(&Frame::from(open).to_bytes()[..]);
        assert!(Frame::decode(&mut buf).is_err(), "{bad:?} decoded");
    }
    assert!(StreamKind::is_recording_name(
        "20261207T101500Z-client-alice-1.cast"
    ));
    assert!(StreamKind::is_recording_name(""));
}
