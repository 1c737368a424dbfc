//! Reading an uploaded campaign audience line by line, in constant memory: one user id a line,
//! CSV with a header naming the id column, or NDJSON.

use crate::campaign::AudienceLine;
use crate::names::check_name;

/// How an upload is written, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudienceFormat {
    /// `text/plain`: one user id a line.
    Lines,
    /// `text/csv`: a header row, then rows; the id is in the column named `column`
    /// (default: the first of `user_id`, `user`, `id`).
    Csv,
    /// `application/x-ndjson`: a JSON string, or an object with `user_id`, `user` or `id`.
    Ndjson,
}

impl AudienceFormat {
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let media = content_type.split(';').next().unwrap_or("").trim();
        match media.to_ascii_lowercase().as_str() {
            "" | "text/plain" => Some(AudienceFormat::Lines),
            "text/csv" => Some(AudienceFormat::Csv),
            "application/x-ndjson" | "application/ndjson" | "application/jsonl" => {
                Some(AudienceFormat::Ndjson)
            }
            _ => None,
        }
    }
}

const ID_COLUMNS: [&str; 3] = ["user_id", "user", "id"];

/// Reads one upload's lines in order.
pub struct AudienceReader {
    format: AudienceFormat,
    column: Option<String>,
    /// For CSV, once the header is read: the id column's index.
    index: Option<usize>,
}

impl AudienceReader {
    pub fn new(format: AudienceFormat, column: Option<String>) -> Self {
        Self {
            format,
            column,
            index: None,
        }
    }

    /// What one line (without its line break) holds.
    pub fn read(&mut self, line: &str) -> AudienceLine {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            return AudienceLine::Skip;
        }
        match self.format {
            AudienceFormat::Lines => user(line.trim()),
            AudienceFormat::Csv => self.csv(line),
            AudienceFormat::Ndjson => ndjson(line),
        }
    }

    fn csv(&mut self, line: &str) -> AudienceLine {
        let cells: Vec<&str> = line
            .split(',')
            .map(|c| c.trim().trim_matches('"'))
            .collect();
        let Some(index) = self.index else {
            let wanted: Vec<&str> = match &self.column {
                Some(c) => vec![c.as_str()],
                None => ID_COLUMNS.to_vec(),
            };
            let found = wanted
                .iter()
                .find_map(|w| cells.iter().position(|c| c.eq_ignore_ascii_case(w)));
            return match found {
                Some(i) => {
                    self.index = Some(i);
                    AudienceLine::Skip
                }
                None => AudienceLine::Malformed(format!(
                    "the header names no id column (looked for {})",
                    wanted.join(", ")
                )),
            };
        };
        match cells.get(index) {
            Some(id) => user(id),
            None => AudienceLine::Malformed(format!("no column {}", index + 1)),
        }
    }
}

fn user(id: &str) -> AudienceLine {
    match check_name("user id", id) {
        Ok(()) => AudienceLine::User(id.to_owned()),
        Err(e) => AudienceLine::Malformed(e),
    }
}

fn ndjson(line: &str) -> AudienceLine {
    let value: serde_json::Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => return AudienceLine::Malformed(format!("not JSON: {e}")),
    };
    let id = match &value {
        serde_json::Value::String(s) => Some(s.as_str()),
        serde_json::Value::Object(o) => ID_COLUMNS
            .iter()
            .find_map(|k| o.get(*k).and_then(|v| v.as_str())),
        _ => None,
    };
    match id {
        Some(id) => user(id),
        None => AudienceLine::Malformed(
            "expected a string or an object with user_id, user or id".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(format: AudienceFormat, column: Option<&str>, text: &str) -> Vec<AudienceLine> {
        let mut reader = AudienceReader::new(format, column.map(String::from));
        text.lines().map(|l| reader.read(l)).collect()
    }

    #[test]
    fn plain_lines() {
        let got = read_all(
            AudienceFormat::Lines,
            None,
            "alice\r\n\n bob \nnot valid!\n",
        );
        assert_eq!(got[0], AudienceLine::User("alice".into()));
        assert_eq!(got[1], AudienceLine::Skip);
        assert_eq!(got[2], AudienceLine::User("bob".into()));
        assert!(matches!(got[3], AudienceLine::Malformed(_)));
    }

    #[test]
    fn csv_with_a_named_or_guessed_column() {
        let text = "email,user_id,plan\na@x.com,alice,pro\nb@x.com\n";
        let got = read_all(AudienceFormat::Csv, None, text);
        assert_eq!(got[0], AudienceLine::Skip);
        assert_eq!(got[1], AudienceLine::User("alice".into()));
        assert!(matches!(got[2], AudienceLine::Malformed(_)));
        let got = read_all(
            AudienceFormat::Csv,
            Some("member"),
            "\"member\"\n\"carol\"\n",
        );
        assert_eq!(got[1], AudienceLine::User("carol".into()));
        let got = read_all(AudienceFormat::Csv, None, "email\nx\n");
        assert!(matches!(got[0], AudienceLine::Malformed(_)));
    }

    #[test]
    fn ndjson_strings_and_objects() {
        let got = read_all(
            AudienceFormat::Ndjson,
            None,
            "\"alice\"\n{\"user_id\":\"bob\",\"x\":1}\n{\"name\":\"c\"}\n{oops\n",
        );
        assert_eq!(got[0], AudienceLine::User("alice".into()));
        assert_eq!(got[1], AudienceLine::User("bob".into()));
        assert!(matches!(got[2], AudienceLine::Malformed(_)));
        assert!(matches!(got[3], AudienceLine::Malformed(_)));
    }

    #[test]
    fn content_types() {
        assert_eq!(
            AudienceFormat::from_content_type("text/csv; charset=utf-8"),
            Some(AudienceFormat::Csv)
        );
        assert_eq!(
            AudienceFormat::from_content_type("application/x-ndjson"),
            Some(AudienceFormat::Ndjson)
        );
        assert_eq!(AudienceFormat::from_content_type("image/png"), None);
    }
}
