//! CPU lists: `"0-3,6"` in the config file and on the command line, or an array of ids.

/// CPU ids must be below this (glibc's `CPU_SETSIZE`, the most `sched_setaffinity` takes
/// through a `cpu_set_t`). It also bounds the length of any list.
pub const CPU_ID_LIMIT: usize = 1024;

/// Parses a CPU list such as `"0-3,6"` into `[0, 1, 2, 3, 6]`, keeping the order given.
///
/// Items are single ids or inclusive `first-last` ranges, separated by commas; spaces
/// around an item are allowed. Empty lists, empty items, reversed ranges, duplicates and
/// ids of [`CPU_ID_LIMIT`] or more are rejected.
pub fn parse_cpu_list(s: &str) -> Result<Vec<usize>, String> {
    let mut list = CpuListBuilder::new();
    if s.trim().is_empty() {
        return Err("CPU list is empty (expected e.g. \"0-3,6\")".to_owned());
    }
    for item in s.split(',').map(str::trim) {
        match item.split_once('-') {
            None => list.push(parse_cpu_id(item)?)?,
            Some((first, last)) => {
                let (first, last) = (parse_cpu_id(first.trim())?, parse_cpu_id(last.trim())?);
                if first > last {
                    return Err(format!(
                        "CPU range \"{item}\" is reversed (write {last}-{first})"
                    ));
                }
                for id in first..=last {
                    list.push(id)?;
                }
            }
        }
    }
    list.finish()
}

/// Writes CPU ids as a list [`parse_cpu_list`] reads back, runs of consecutive ids as
/// ranges: `[0, 1, 2, 5]` gives `"0-2,5"`.
pub fn format_cpu_list(ids: &[usize]) -> String {
    let mut items: Vec<String> = Vec::new();
    let mut rest = ids;
    while let Some((&first, _)) = rest.split_first() {
        let run = rest
            .iter()
            .zip(first..)
            .take_while(|&(&id, expected)| id == expected)
            .count();
        let last = first + run - 1;
        items.push(if run == 1 {
            first.to_string()
        } else {
            format!("{first}-{last}")
        });
        rest = &rest[run..];
    }
    items.join(",")
}

fn parse_cpu_id(s: &str) -> Result<usize, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "invalid CPU id {s:?} (expected a list of ids and ranges, e.g. \"0-3,6\")"
        ));
    }
    s.parse().map_err(|_| too_large(s))
}

fn too_large(id: impl std::fmt::Display) -> String {
    format!("CPU id {id} is too large (must be below {CPU_ID_LIMIT})")
}

/// Collects CPU ids in order, rejecting duplicates and out-of-range ids.
pub(crate) struct CpuListBuilder {
    ids: Vec<usize>,
    seen: [bool; CPU_ID_LIMIT],
}

impl CpuListBuilder {
    pub(crate) fn new() -> Self {
        Self {
            ids: Vec::new(),
            seen: [false; CPU_ID_LIMIT],
        }
    }

    pub(crate) fn push(&mut self, id: usize) -> Result<(), String> {
        let seen = self.seen.get_mut(id).ok_or_else(|| too_large(id))?;
        if *seen {
            return Err(format!("CPU {id} is listed twice"));
        }
        *seen = true;
        self.ids.push(id);
        Ok(())
    }

    pub(crate) fn finish(self) -> Result<Vec<usize>, String> {
        if self.ids.is_empty() {
            return Err("CPU list is empty".to_owned());
        }
        Ok(self.ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ids_and_ranges_in_order() {
        assert_eq!(parse_cpu_list("0-3,6"), Ok(vec![0, 1, 2, 3, 6]));
        assert_eq!(parse_cpu_list("5"), Ok(vec![5]));
        assert_eq!(parse_cpu_list("7,2-3"), Ok(vec![7, 2, 3]));
        assert_eq!(parse_cpu_list(" 1 , 2 - 3 "), Ok(vec![1, 2, 3]));
        assert_eq!(parse_cpu_list("4-4"), Ok(vec![4]));
        assert_eq!(parse_cpu_list("1023"), Ok(vec![1023]));
    }

    #[test]
    fn formats_runs_as_ranges_and_reads_back() {
        assert_eq!(format_cpu_list(&[0, 1]), "0-1");
        assert_eq!(format_cpu_list(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
        assert_eq!(format_cpu_list(&[3]), "3");
        assert_eq!(format_cpu_list(&[2, 1]), "2,1");
        assert_eq!(format_cpu_list(&[]), "");
        let ids = vec![4, 5, 6, 0, 9];
        assert_eq!(parse_cpu_list(&format_cpu_list(&ids)), Ok(ids));
    }

    #[test]
    fn rejects_empty() {
        assert!(parse_cpu_list("").unwrap_err().contains("empty"));
        assert!(parse_cpu_list("  ").unwrap_err().contains("empty"));
        assert!(
            parse_cpu_list("1,,2")
                .unwrap_err()
                .contains("invalid CPU id \"\"")
        );
        assert!(parse_cpu_list("1,").is_err());
        assert!(parse_cpu_list("-3").is_err());
        assert!(parse_cpu_list("3-").is_err());
    }

    #[test]
    fn rejects_reversed_range() {
        assert_eq!(
            parse_cpu_list("3-1"),
            Err("CPU range \"3-1\" is reversed (write 1-3)".to_owned())
        );
    }

    #[test]
    fn rejects_duplicates() {
        assert_eq!(
            parse_cpu_list("1,1"),
            Err("CPU 1 is listed twice".to_owned())
        );
        assert_eq!(
            parse_cpu_list("0-3,2"),
            Err("CPU 2 is listed twice".to_owned())
        );
    }

    #[test]
    fn rejects_garbage() {
        for input in ["a", "1;2", "0x1", "+1", "1.5", "1-2-3", "one-two", "1 2"] {
            assert!(
                parse_cpu_list(input)
                    .unwrap_err()
                    .contains("invalid CPU id"),
                "{input:?}"
            );
        }
    }

    #[test]
    fn rejects_huge_ids_without_allocating_them() {
        assert!(parse_cpu_list("1024").unwrap_err().contains("too large"));
        assert!(
            parse_cpu_list("0-4000000000")
                .unwrap_err()
                .contains("too large")
        );
        assert!(
            parse_cpu_list("99999999999999999999999")
                .unwrap_err()
                .contains("too large")
        );
    }
}
