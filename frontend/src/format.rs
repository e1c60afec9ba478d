//! Human-readable figures: sizes, percentages, durations and times, as Proxmox shows them.

/// Formats a byte count with binary units, e.g. `1.50 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

/// Formats a 0.0..=1.0 fraction as a percentage with two decimals, e.g. `12.34%`.
pub fn percent(fraction: f64) -> String {
    format!("{:.2}%", fraction.clamp(0.0, 1.0) * 100.0)
}

/// `used / total` as a 0.0..=1.0 fraction; 0 when the total is unknown.
pub fn ratio(used: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        (used as f64 / total as f64).clamp(0.0, 1.0)
    }
}

/// Formats an uptime in seconds as Proxmox does: `3 days 04:05:06`, or `04:05:06` under a day.
pub fn uptime(secs: u64) -> String {
    let days = secs / 86_400;
    let hms = format!(
        "{:02}:{:02}:{:02}",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60
    );
    match days {
        0 => hms,
        1 => format!("1 day {hms}"),
        d => format!("{d} days {hms}"),
    }
}

/// Formats a short elapsed time such as a heartbeat age: `5 s ago`, `3 min ago`, `2 h ago`.
pub fn ago(secs: u64) -> String {
    match secs {
        0..=119 => format!("{secs} s ago"),
        120..=7199 => format!("{} min ago", secs / 60),
        _ => format!("{} h ago", secs / 3600),
    }
}

/// Formats a Unix time as `YYYY-MM-DD HH:MM:SS` in the browser's time zone (UTC when rendered
/// on the server, where no time zone is known).
pub fn timestamp(unix_secs: i64) -> String {
    let offset_secs = local_offset_secs(unix_secs);
    let (date, time) = civil_from_unix(unix_secs + offset_secs);
    format!("{date} {time}")
}

/// The current Unix time (the browser's clock; the server's when rendered there).
pub fn now_secs() -> i64 {
    #[cfg(feature = "hydrate")]
    {
        (js_sys::Date::now() / 1000.0) as i64
    }
    #[cfg(not(feature = "hydrate"))]
    {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }
}

/// A Unix time as the value of an `<input type="datetime-local">` (`YYYY-MM-DDTHH:MM`, the
/// browser's time zone).
pub fn datetime_local(unix_secs: i64) -> String {
    let (date, time) = civil_from_unix(unix_secs + local_offset_secs(unix_secs));
    format!("{date}T{}", &time[..5])
}

/// Reads the value of an `<input type="datetime-local">` (`YYYY-MM-DDTHH:MM[:SS]`, the
/// browser's time zone) as a Unix time.
pub fn parse_datetime_local(text: &str) -> Option<i64> {
    let (date, time) = text.trim().split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hour, minute) = (t.next()??, t.next()??);
    let second = t.next().flatten().unwrap_or(0);
    let valid = (1..=12).contains(&month)
        && (1..=31).contains(&day)
        && (0..24).contains(&hour)
        && (0..60).contains(&minute)
        && (0..60).contains(&second);
    if !valid {
        return None;
    }
    let naive = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    Some(naive - local_offset_secs(naive))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The browser's UTC offset at the given instant, in seconds east of UTC.
#[cfg(feature = "hydrate")]
fn local_offset_secs(unix_secs: i64) -> i64 {
    let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(unix_secs as f64 * 1000.0));
    // getTimezoneOffset() is minutes *west* of UTC.
    -(date.get_timezone_offset() as i64) * 60
}

#[cfg(not(feature = "hydrate"))]
fn local_offset_secs(_unix_secs: i64) -> i64 {
    0
}

/// Splits seconds since the epoch into (`YYYY-MM-DD`, `HH:MM:SS`), proleptic Gregorian.
fn civil_from_unix(secs: i64) -> (String, String) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        format!("{year:04}-{month:02}-{day:02}"),
        format!("{:02}:{:02}:{:02}", rem / 3600, (rem / 60) % 60, rem % 60),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_use_binary_units_with_two_decimals() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.50 KiB");
        assert_eq!(bytes(8 * 1024 * 1024 * 1024), "8.00 GiB");
    }

    #[test]
    fn percent_is_clamped_to_the_valid_range() {
        assert_eq!(percent(0.1234), "12.34%");
        assert_eq!(percent(1.5), "100.00%");
        assert_eq!(percent(-0.2), "0.00%");
    }

    #[test]
    fn ratio_of_unknown_total_is_zero() {
        assert_eq!(ratio(5, 0), 0.0);
        assert_eq!(ratio(1, 4), 0.25);
    }

    #[test]
    fn uptime_shows_days_only_when_there_are_any() {
        assert_eq!(uptime(59), "00:00:59");
        assert_eq!(uptime(86_400 + 3_661), "1 day 01:01:01");
        assert_eq!(
            uptime(3 * 86_400 + 4 * 3600 + 5 * 60 + 6),
            "3 days 04:05:06"
        );
    }

    #[test]
    fn ago_switches_units_as_time_grows() {
        assert_eq!(ago(4), "4 s ago");
        assert_eq!(ago(600), "10 min ago");
        assert_eq!(ago(7200), "2 h ago");
    }

    #[test]
    fn datetime_inputs_round_trip() {
        assert_eq!(datetime_local(1_700_000_000), "2023-11-14T22:13");
        assert_eq!(
            parse_datetime_local("2023-11-14T22:13"),
            Some(1_699_999_980)
        );
        assert_eq!(
            parse_datetime_local("2000-02-29T00:00:00"),
            Some(951_782_400)
        );
        assert_eq!(parse_datetime_local("2023-13-01T00:00"), None);
        assert_eq!(parse_datetime_local("tomorrow"), None);
    }

    #[test]
    fn timestamps_render_in_utc_on_the_server() {
        assert_eq!(timestamp(0), "1970-01-01 00:00:00");
        assert_eq!(timestamp(1_700_000_000), "2023-11-14 22:13:20");
        assert_eq!(timestamp(951_782_400), "2000-02-29 00:00:00");
    }
}
