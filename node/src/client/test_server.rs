//! A tiny scripted HTTP server on 127.0.0.1:0 for the client's tests: one connection per
//! scripted reply, in order, each answered and closed. Bounded in time so a broken test fails
//! instead of hanging.

use serde_json::{json, Value};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long the server waits for a connection or a read before giving up.
const PATIENCE: Duration = Duration::from_secs(10);

pub enum Reply {
    /// `{"jsonrpc":"2.0","id":<request id>,"result":…}` with HTTP 200.
    Result(Value),
    /// A JSON-RPC error object with the given HTTP status.
    Error {
        status: u16,
        code: i64,
        message: String,
        data: Option<Value>,
    },
    /// Exactly these bytes as the body.
    Raw { status: u16, body: Vec<u8> },
    /// Reads the request and never answers; holds the connection until the client drops it.
    Silent,
}

impl Reply {
    pub fn result(v: Value) -> Reply {
        Reply::Result(v)
    }
    pub fn error(status: u16, code: i64, message: &str, data: Option<Value>) -> Reply {
        Reply::Error {
            status,
            code,
            message: message.to_string(),
            data,
        }
    }
    pub fn raw(status: u16, body: Vec<u8>) -> Reply {
        Reply::Raw { status, body }
    }
}

pub struct TestServer {
    url: String,
    handle: JoinHandle<Vec<Value>>,
}

impl TestServer {
    pub fn start(replies: Vec<Reply>) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        listener.set_nonblocking(true).expect("nonblocking");
        let handle = thread::spawn(move || {
            let mut requests = Vec::new();
            for reply in replies {
                let mut stream = accept(&listener);
                let request = read_request(&mut stream);
                answer(&mut stream, &request, reply);
                requests.push(request);
            }
            requests
        });
        TestServer { url, handle }
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Waits until every scripted reply was given; returns the JSON bodies received.
    pub fn finish(self) -> Vec<Value> {
        self.handle.join().expect("test server thread panicked")
    }
}

fn accept(listener: &TcpListener) -> TcpStream {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).expect("blocking");
                stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
                return stream;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "no client connected");
                thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

/// Reads one HTTP request with a Content-Length body and parses the body as JSON.
fn read_request(stream: &mut TcpStream) -> Value {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).expect("read request head");
        assert!(n > 0, "client closed before sending a request");
        buf.extend_from_slice(&chunk[..n]);
        assert!(buf.len() < 1 << 16, "request head too large");
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    assert!(head.starts_with("post "), "expected a POST: {head}");
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .expect("content-length header")
        .trim()
        .parse()
        .expect("content-length value");
    while buf.len() < head_end + len {
        let n = stream.read(&mut chunk).expect("read request body");
        assert!(n > 0, "client closed mid-body");
        buf.extend_from_slice(&chunk[..n]);
    }
    serde_json::from_slice(&buf[head_end..head_end + len]).expect("request body is JSON")
}

fn answer(stream: &mut TcpStream, request: &Value, reply: Reply) {
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let (status, body) = match reply {
        Reply::Result(result) => (200, json!({"jsonrpc": "2.0", "id": id, "result": result})),
        Reply::Error {
            status,
            code,
            message,
            data,
        } => {
            let mut error = json!({"code": code, "message": message});
            if let Some(d) = data {
                error["data"] = d;
            }
            (status, json!({"jsonrpc": "2.0", "id": id, "error": error}))
        }
        Reply::Raw { status, body } => {
            write_response(stream, status, &body);
            return;
        }
        Reply::Silent => {
            // Until the client gives up and closes (read returns 0 or fails).
            let mut sink = [0u8; 64];
            while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
            return;
        }
    };
    write_response(stream, status, body.to_string().as_bytes());
}

fn write_response(stream: &mut TcpStream, status: u16, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n",
        body.len()
    );
    // The client may hang up early (an over-limit body): that is what some tests check.
    let _ = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body))
        .and_then(|()| stream.flush());
}
