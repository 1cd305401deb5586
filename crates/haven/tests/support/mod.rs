//! What the `haven` crate's test files share (each includes it with `mod support;` and uses
//! what it needs).
#![allow(dead_code)]

/// The date of birth test accounts register with unless a test is about age: an adult, whom the
/// contact rules for minors do not restrict.
pub const ADULT_BIRTH_DATE: &str = "1990-01-01";

/// The date of birth, `YYYY-MM-DD`, of someone who turns `years` old today (UTC; computed from
/// today's date, so tests do not age). The 29th of February becomes the 28th.
pub fn born_years_ago(years: i32) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let today = haven_safety::age::utc_day(now);
    let year = today.year() - years;
    let born = today
        .replace_year(year)
        .or_else(|_| today.replace_day(28).and_then(|d| d.replace_year(year)))
        .unwrap_or_else(|e| panic!("no date {years} years ago: {e}"));
    haven_safety::age::format_date(born)
}

/// `a` asks `b` to connect and `b` accepts (client library): between connections, 1:1 chats and
/// group adds need no request.
pub async fn connect(a: &mut haven_client::Client, b: &mut haven_client::Client) {
    let (au, bu) = (a.user().clone(), b.user().clone());
    a.contact_request(&bu).await.unwrap();
    b.contact_answer(&au, true).await.unwrap();
}

/// A `haven server` child process, killed when dropped.
pub struct ServerProcess(pub std::process::Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `haven server --listen 127.0.0.1:PORT --data DATA EXTRA…` on a free loopback port with
/// the given output, waits until it accepts connections and returns it with its URL.
pub fn spawn_server(
    data: &std::path::Path,
    extra: &[&str],
    stdout: std::process::Stdio,
    stderr: std::process::Stdio,
) -> (ServerProcess, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"));
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_haven"))
        .args(["server", "--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(data)
        .args(extra)
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start the server: {e}"));
    let server = ServerProcess(child);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "server did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    (server, format!("http://127.0.0.1:{port}"))
}
