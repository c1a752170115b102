//! Inbound WebSocket frames, read in the session's own task from the raw socket.
//!
//! The read buffer is small while the connection is idle: it grows for a large message and is
//! handed back as soon as it is empty again. Fragmented messages are put back together here, and
//! held to the same size limit as whole ones.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use actix_http::ws::{Codec, Frame, Item, ProtocolError};
use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use futures_util::Stream;
use tokio::io::AsyncRead;
use tokio_util::codec::{Decoder, FramedRead};

/// Room kept for an idle connection's next frame: pings and most requests fit.
const IDLE_READ_BUFFER: usize = 256;

/// What the session hears from the client.
#[derive(Debug)]
pub enum Inbound {
    Text(ByteString),
    Binary,
    Ping(Bytes),
    Pong,
    Close,
    /// A message over the size limit, whole or in fragments.
    TooBig,
    /// Anything else RFC 6455 does not allow.
    Invalid(String),
}

pub struct Frames<R> {
    frames: FramedRead<R, Codec>,
    /// A fragmented message being put back together: whether it is text, and its bytes so far.
    partial: Option<(bool, BytesMut)>,
    max_size: usize,
    /// Bytes that came with the handshake are still to be decoded: they are decoded before the
    /// socket is read, since no more bytes may come to wake the reader.
    pipelined: bool,
}

impl<R: AsyncRead + Unpin> Frames<R> {
    /// Frames from `io`, starting with `already_read`: bytes that arrived with the handshake.
    pub fn new(io: R, already_read: &[u8], max_size: usize) -> Self {
        let codec = Codec::new().max_size(max_size);
        let mut frames =
            FramedRead::with_capacity(io, codec, IDLE_READ_BUFFER.max(already_read.len()));
        frames.read_buffer_mut().extend_from_slice(already_read);
        Frames {
            frames,
            partial: None,
            max_size,
            pipelined: !already_read.is_empty(),
        }
    }

    fn assemble(&mut self, item: Item) -> Option<Inbound> {
        let last = matches!(item, Item::Last(_));
        let (text, first) = match item {
            Item::FirstText(bytes) => (true, bytes),
            Item::FirstBinary(bytes) => (false, bytes),
            Item::Continue(bytes) | Item::Last(bytes) => {
                let Some((_, so_far)) = self.partial.as_mut() else {
                    return Some(Inbound::Invalid("continuation without a start".into()));
                };
                if so_far.len() + bytes.len() > self.max_size {
                    return Some(Inbound::TooBig);
                }
                so_far.extend_from_slice(&bytes);
                if last {
                    let (text, whole) = self.partial.take().expect("checked above");
                    return Some(whole_message(text, whole.freeze()));
                }
                return None;
            }
        };
        self.partial = Some((text, BytesMut::from(&first[..])));
        None
    }

    /// The next frame of the bytes that came with the handshake, while they hold a whole one.
    fn decode_pipelined(&mut self) -> Option<Result<Frame, ProtocolError>> {
        if !self.pipelined {
            return None;
        }
        let mut buffer = std::mem::take(self.frames.read_buffer_mut());
        let decoded = self.frames.decoder_mut().decode(&mut buffer);
        *self.frames.read_buffer_mut() = buffer;
        match decoded {
            Ok(Some(frame)) => Some(Ok(frame)),
            Ok(None) => {
                self.pipelined = false;
                None
            }
            Err(e) => {
                self.pipelined = false;
                Some(Err(e))
            }
        }
    }

    /// Hands a grown read buffer back once it holds nothing.
    fn shrink_when_empty(&mut self) {
        let buffer = self.frames.read_buffer_mut();
        if buffer.is_empty() && buffer.capacity() > IDLE_READ_BUFFER {
            *buffer = BytesMut::with_capacity(IDLE_READ_BUFFER);
        }
    }
}

fn whole_message(text: bool, bytes: Bytes) -> Inbound {
    if !text {
        return Inbound::Binary;
    }
    match ByteString::try_from(bytes) {
        Ok(text) => Inbound::Text(text),
        Err(_) => Inbound::Invalid("text that is not UTF-8".into()),
    }
}

impl<R: AsyncRead + Unpin> Stream for Frames<R> {
    type Item = Inbound;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Inbound>> {
        let this = self.get_mut();
        loop {
            let next = match this.decode_pipelined() {
                Some(frame) => Some(frame),
                None => match Pin::new(&mut this.frames).poll_next(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(next) => next,
                },
            };
            this.shrink_when_empty();
            let inbound = match next {
                None => return Poll::Ready(None),
                Some(Ok(Frame::Text(bytes))) => whole_message(true, bytes),
                Some(Ok(Frame::Binary(_))) => Inbound::Binary,
                Some(Ok(Frame::Continuation(item))) => match this.assemble(item) {
                    Some(inbound) => inbound,
                    None => continue,
                },
                Some(Ok(Frame::Ping(payload))) => Inbound::Ping(payload),
                Some(Ok(Frame::Pong(_))) => Inbound::Pong,
                Some(Ok(Frame::Close(_))) => Inbound::Close,
                Some(Err(ProtocolError::Overflow)) => Inbound::TooBig,
                Some(Err(e)) => Inbound::Invalid(e.to_string()),
            };
            return Poll::Ready(Some(inbound));
        }
    }
}
