//! Geolocation: the answer for the client's country, else its continent, else the default.

use super::decision::{Chosen, Decision, Query};
use meridian_config::GeoMatch;
use std::ops::ControlFlow::{self, Continue};

pub(super) fn decide(q: &Query) -> ControlFlow<Decision, Chosen> {
    let Query {
        set, client, live, ..
    } = *q;
    let country = client.location.as_ref().and_then(|l| l.country.clone());
    let continent = client.location.as_ref().and_then(|l| l.continent.clone());
    let find = |m: &GeoMatch| {
        live.iter()
            .copied()
            .find(|&i| set.answers[i].geo.as_ref() == Some(m))
    };
    let by_country = country.clone().and_then(|c| find(&GeoMatch::Country(c)));
    let by_continent = continent
        .clone()
        .and_then(|c| find(&GeoMatch::Continent(c)));
    Continue(match (by_country, by_continent, find(&GeoMatch::Default)) {
        (Some(i), _, _) => (
            vec![i],
            format!("geolocation: country {}", country.unwrap_or_default()),
        ),
        (None, Some(i), _) => (
            vec![i],
            format!("geolocation: continent {}", continent.unwrap_or_default()),
        ),
        (None, None, Some(i)) => (vec![i], "geolocation: the default location".into()),
        _ => (
            Vec::new(),
            "geolocation: no record for this location and no default".into(),
        ),
    })
}
