//! `[[client_location]]`: places simulated clients send traffic from.

use crate::common::CONTINENTS;
use crate::error::Diagnostics;
use crate::geo::{read_location, Coordinates};
use crate::read::Table;
use serde::Serialize;

/// A place simulated clients send traffic from.
#[derive(Debug, Clone, Serialize)]
pub struct ClientLocation {
    pub name: String,
    pub location: Coordinates,
    /// ISO 3166 country code and continent code (AF, AN, AS, EU, NA, OC, SA), for
    /// geolocation routing.
    pub country: Option<String>,
    pub continent: Option<String>,
}

pub(crate) fn read_client_location(
    s: &Table,
    d: &mut Diagnostics,
    name: String,
) -> Option<ClientLocation> {
    let location = read_location(s, d);
    let country = s.str(d, "country");
    let continent = s.str(d, "continent");
    if let (Some(c), Some(f)) = (&continent, s.get("continent")) {
        if !CONTINENTS.contains(&c.as_str()) {
            d.error(
                f.span,
                &f.key,
                format!("`{c}` is not a continent code"),
                "use AF, AN, AS, EU, NA, OC or SA",
            );
        }
    }
    s.finish(d);
    Some(ClientLocation {
        name,
        location: location?,
        country,
        continent,
    })
}
