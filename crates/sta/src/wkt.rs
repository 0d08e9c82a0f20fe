//! Geometry literals: the well-known text inside `geography'...'`.
//!
//! The parser (in `parse::lex`) reads WKT into this structure, and the SQL
//! parameter is this structure printed again, so PostGIS only ever sees WKT
//! we wrote, never the client's bytes.

use std::fmt;

/// Longitude, latitude in degrees (WGS 84, SRID 4326).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Coord {
    pub x: f64,
    pub y: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Geometry {
    Point(Coord),
    LineString(Vec<Coord>),
    /// Rings: the first is the shell, the rest are holes; each is closed.
    Polygon(Vec<Vec<Coord>>),
    MultiPoint(Vec<Coord>),
    MultiLineString(Vec<Vec<Coord>>),
    MultiPolygon(Vec<Vec<Vec<Coord>>>),
}

impl Geometry {
    /// Checks what PostGIS would otherwise reject at run time (which would
    /// surface as a SQL error): coordinate ranges, line and ring sizes,
    /// closed rings. Returns a message for the client.
    pub fn validate(&self) -> Result<(), String> {
        fn coord(c: &Coord) -> Result<(), String> {
            if !(-180.0..=180.0).contains(&c.x) || !(-90.0..=90.0).contains(&c.y) {
                return Err(format!("coordinate ({} {}) is outside longitude -180..180, latitude -90..90", c.x, c.y));
            }
            Ok(())
        }
        fn line(l: &[Coord]) -> Result<(), String> {
            if l.len() < 2 {
                return Err("a LINESTRING needs at least 2 points".into());
            }
            l.iter().try_for_each(coord)
        }
        fn polygon(p: &[Vec<Coord>]) -> Result<(), String> {
            for ring in p {
                if ring.len() < 4 {
                    return Err("a POLYGON ring needs at least 4 points".into());
                }
                if ring.first() != ring.last() {
                    return Err("a POLYGON ring must end where it starts".into());
                }
                ring.iter().try_for_each(coord)?;
            }
            Ok(())
        }
        match self {
            Geometry::Point(c) => coord(c),
            Geometry::LineString(l) => line(l),
            Geometry::Polygon(p) => polygon(p),
            Geometry::MultiPoint(ps) => ps.iter().try_for_each(coord),
            Geometry::MultiLineString(ls) => ls.iter().try_for_each(|l| line(l)),
            Geometry::MultiPolygon(ps) => ps.iter().try_for_each(|p| polygon(p)),
        }
    }
}

struct Coords<'a>(&'a [Coord]);

impl fmt::Display for Coords<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(")?;
        for (i, c) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{} {}", c.x, c.y)?;
        }
        f.write_str(")")
    }
}

fn list<T>(
    f: &mut fmt::Formatter<'_>,
    items: &[T],
    each: impl Fn(&mut fmt::Formatter<'_>, &T) -> fmt::Result,
) -> fmt::Result {
    f.write_str("(")?;
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        each(f, item)?;
    }
    f.write_str(")")
}

impl fmt::Display for Geometry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ring = |f: &mut fmt::Formatter<'_>, r: &Vec<Coord>| write!(f, "{}", Coords(r));
        match self {
            Geometry::Point(c) => write!(f, "POINT({} {})", c.x, c.y),
            Geometry::LineString(l) => write!(f, "LINESTRING{}", Coords(l)),
            Geometry::Polygon(p) => {
                f.write_str("POLYGON")?;
                list(f, p, ring)
            }
            Geometry::MultiPoint(ps) => {
                f.write_str("MULTIPOINT")?;
                list(f, ps, |f, c| write!(f, "({} {})", c.x, c.y))
            }
            Geometry::MultiLineString(ls) => {
                f.write_str("MULTILINESTRING")?;
                list(f, ls, ring)
            }
            Geometry::MultiPolygon(ps) => {
                f.write_str("MULTIPOLYGON")?;
                list(f, ps, |f, p| list(f, p, ring))
            }
        }
    }
}
