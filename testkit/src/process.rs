//! Running a tool (kubectl, helm, the operator's `check`) from a test: its output, and a
//! failure message that carries everything it printed.

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// Bytes a tool printed, as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `cmd`, feeding `stdin` when given, and returns what it did.
pub fn run(mut cmd: Command, stdin: Option<&str>) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("start {cmd:?}: {e}"));
    // From another thread, so that a child writing much before reading all cannot block us.
    let writer = stdin.map(|input| {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        let input = input.to_owned();
        std::thread::spawn(move || pipe.write_all(input.as_bytes()))
    });
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("wait for {cmd:?}: {e}"));
    if let Some(writer) = writer {
        writer
            .join()
            .expect("stdin writer")
            .unwrap_or_else(|e| panic!("write the stdin of {cmd:?}: {e}"));
    }
    out
}

/// Fails the test with both outputs unless `out` is a success.
pub fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// Runs `cmd` and returns its stdout; fails the test with both outputs when it fails.
pub fn succeed(what: &str, cmd: Command, stdin: Option<&str>) -> String {
    let out = run(cmd, stdin);
    assert_success(what, &out);
    text(&out.stdout)
}

/// Runs `cmd`, which must fail; returns its stderr.
pub fn fail(what: &str, cmd: Command) -> String {
    let out = run(cmd, None);
    assert!(
        !out.status.success(),
        "{what} succeeded but must fail:\n{}",
        text(&out.stdout)
    );
    text(&out.stderr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdin_reaches_the_tool_and_stdout_comes_back() {
        let mut cmd = Command::new("cat");
        cmd.arg("-");
        assert_eq!(succeed("cat", cmd, Some("hello\n")), "hello\n");
    }

    #[test]
    fn a_failing_tool_gives_its_stderr() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo refused >&2; exit 3"]);
        assert_eq!(fail("sh", cmd), "refused\n");
    }
}
