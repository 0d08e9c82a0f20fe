//! The built-in functions of SensorThings API 1.1 `$filter` (OGC 18-088,
//! "Built-in query functions", which takes them from OData 4.0 plus the
//! OGC Simple Features `st_` predicates), with their arities.

/// A built-in function. Names are matched case-insensitively, as
/// FROST-Server does, since clients in the wild send `substringOf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Func {
    // strings
    SubstringOf,
    /// OData 4.0's spelling of `substringof` with the arguments swapped.
    Contains,
    StartsWith,
    EndsWith,
    Length,
    IndexOf,
    Substring,
    ToLower,
    ToUpper,
    Trim,
    Concat,
    // dates and times
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    FractionalSeconds,
    Date,
    Time,
    TotalOffsetMinutes,
    Now,
    MinDateTime,
    MaxDateTime,
    // math
    Round,
    Floor,
    Ceiling,
    // geospatial
    GeoDistance,
    GeoLength,
    GeoIntersects,
    StEquals,
    StDisjoint,
    StTouches,
    StWithin,
    StOverlaps,
    StCrosses,
    StIntersects,
    StContains,
    StRelate,
}

/// Name, least and most arguments.
const TABLE: [(Func, &str, usize, usize); 39] = [
    (Func::SubstringOf, "substringof", 2, 2),
    (Func::Contains, "contains", 2, 2),
    (Func::StartsWith, "startswith", 2, 2),
    (Func::EndsWith, "endswith", 2, 2),
    (Func::Length, "length", 1, 1),
    (Func::IndexOf, "indexof", 2, 2),
    (Func::Substring, "substring", 2, 3),
    (Func::ToLower, "tolower", 1, 1),
    (Func::ToUpper, "toupper", 1, 1),
    (Func::Trim, "trim", 1, 1),
    (Func::Concat, "concat", 2, 2),
    (Func::Year, "year", 1, 1),
    (Func::Month, "month", 1, 1),
    (Func::Day, "day", 1, 1),
    (Func::Hour, "hour", 1, 1),
    (Func::Minute, "minute", 1, 1),
    (Func::Second, "second", 1, 1),
    (Func::FractionalSeconds, "fractionalseconds", 1, 1),
    (Func::Date, "date", 1, 1),
    (Func::Time, "time", 1, 1),
    (Func::TotalOffsetMinutes, "totaloffsetminutes", 1, 1),
    (Func::Now, "now", 0, 0),
    (Func::MinDateTime, "mindatetime", 0, 0),
    (Func::MaxDateTime, "maxdatetime", 0, 0),
    (Func::Round, "round", 1, 1),
    (Func::Floor, "floor", 1, 1),
    (Func::Ceiling, "ceiling", 1, 1),
    (Func::GeoDistance, "geo.distance", 2, 2),
    (Func::GeoLength, "geo.length", 1, 1),
    (Func::GeoIntersects, "geo.intersects", 2, 2),
    (Func::StEquals, "st_equals", 2, 2),
    (Func::StDisjoint, "st_disjoint", 2, 2),
    (Func::StTouches, "st_touches", 2, 2),
    (Func::StWithin, "st_within", 2, 2),
    (Func::StOverlaps, "st_overlaps", 2, 2),
    (Func::StCrosses, "st_crosses", 2, 2),
    (Func::StIntersects, "st_intersects", 2, 2),
    (Func::StContains, "st_contains", 2, 2),
    (Func::StRelate, "st_relate", 3, 3),
];

impl Func {
    /// Every function, in the order of the specification's table.
    pub fn all() -> impl Iterator<Item = Func> {
        TABLE.iter().map(|row| row.0)
    }

    fn row(self) -> &'static (Func, &'static str, usize, usize) {
        // The table has one row per variant (a unit test checks it).
        TABLE.iter().find(|row| row.0 == self).unwrap_or(&TABLE[0])
    }

    /// The canonical (lower-case) name.
    pub fn name(self) -> &'static str {
        self.row().1
    }

    /// Least and most number of arguments.
    pub fn arity(self) -> (usize, usize) {
        let row = self.row();
        (row.2, row.3)
    }

    /// Looks a name up, ignoring ASCII case.
    pub fn from_name(name: &str) -> Option<Func> {
        TABLE.iter().find(|row| row.1.eq_ignore_ascii_case(name)).map(|row| row.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_function_has_its_own_row() {
        for (i, row) in TABLE.iter().enumerate() {
            assert_eq!(row.0.row().1, row.1, "row {i}");
            assert_eq!(Func::from_name(&row.1.to_uppercase()), Some(row.0));
        }
        assert_eq!(Func::from_name("frobnicate"), None);
    }
}
