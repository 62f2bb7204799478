//! The runtime's own time zone database (JavaScript `Intl`) as the core's `ZoneRules`: the
//! Worker then carries none of its own.

use std::cell::RefCell;
use std::collections::HashMap;

use js_sys::{Array, Date, Function, Object, Reflect};
use parley_core::zone::ZoneRules;
use wasm_bindgen::{JsCast, JsValue};

/// Most zones whose formatter is kept (a team uses a handful).
const KEEP: usize = 64;

thread_local! {
    /// Zone → its formatter (`None`: the runtime does not know the zone).
    static FORMATTERS: RefCell<HashMap<String, Option<Object>>> = RefCell::new(HashMap::new());
}

pub struct IntlZones;

/// A formatter that writes every field of a date in `zone`, with hours 0–23.
fn formatter(zone: &str) -> Option<Object> {
    let intl = Reflect::get(&js_sys::global(), &"Intl".into()).ok()?;
    let constructor: Function = Reflect::get(&intl, &"DateTimeFormat".into())
        .ok()?
        .dyn_into()
        .ok()?;
    let options = Object::new();
    for (key, value) in [
        ("timeZone", zone),
        ("hourCycle", "h23"),
        ("year", "numeric"),
        ("month", "numeric"),
        ("day", "numeric"),
        ("hour", "numeric"),
        ("minute", "numeric"),
        ("second", "numeric"),
    ] {
        Reflect::set(&options, &key.into(), &value.into()).ok()?;
    }
    let arguments = Array::of2(&"en-US".into(), &options);
    // An unknown zone is a RangeError from the constructor.
    Reflect::construct(&constructor, &arguments)
        .ok()?
        .dyn_into()
        .ok()
}

/// The wall clock that `formatter` shows at `utc_ms`, read back as if it were UTC (ms).
fn wall_clock_ms(formatter: &Object, utc_ms: f64) -> Option<f64> {
    let format_to_parts: Function = Reflect::get(formatter, &"formatToParts".into())
        .ok()?
        .dyn_into()
        .ok()?;
    let parts: Array = format_to_parts
        .call1(formatter, &Date::new(&JsValue::from_f64(utc_ms)))
        .ok()?
        .dyn_into()
        .ok()?;
    let mut fields = [0f64; 6]; // year, month, day, hour, minute, second
    for part in parts.iter() {
        let kind = Reflect::get(&part, &"type".into()).ok()?.as_string()?;
        let slot = match kind.as_str() {
            "year" => 0,
            "month" => 1,
            "day" => 2,
            "hour" => 3,
            "minute" => 4,
            "second" => 5,
            _ => continue,
        };
        let value = Reflect::get(&part, &"value".into()).ok()?.as_string()?;
        fields[slot] = value.parse().ok()?;
    }
    let [year, month, day, hour, minute, second] = fields;
    let wall = Date::utc(year, month - 1.0)
        + ((day - 1.0) * 86_400.0 + hour * 3_600.0 + minute * 60.0 + second) * 1000.0;
    wall.is_finite().then_some(wall)
}

impl ZoneRules for IntlZones {
    fn offset_seconds(&self, zone: &str, utc_ms: i64) -> Option<i32> {
        let formatter = FORMATTERS.with(|cache| {
            let mut cache = cache.borrow_mut();
            if let Some(known) = cache.get(zone) {
                return known.clone();
            }
            if cache.len() >= KEEP {
                cache.clear();
            }
            let made = formatter(zone);
            cache.insert(zone.to_string(), made.clone());
            made
        })?;
        // Whole seconds: the formatter shows no milliseconds.
        let utc_s = utc_ms.div_euclid(1000) as f64 * 1000.0;
        let wall = wall_clock_ms(&formatter, utc_s)?;
        Some(((wall - utc_s) / 1000.0).round() as i32)
    }
}
