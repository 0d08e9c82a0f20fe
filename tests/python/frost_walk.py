"""Walks Things -> Datastreams -> Observations of a SensorThings API with
FROST's own Python client (frost-sta-client), the way an app would, and
prints a JSON summary for tests/sta_frost_client.rs to check against the
database.

Usage: python frost_walk.py <service root URL> <page size>

Every collection is read with `$top=<page size>` and walked through the
client's iterator, so the client itself follows `@iot.nextLink`; every GET
the client makes is recorded so the test can count the pages it followed.
"""

import json
import sys

import frost_sta_client as fsc


def main():
    root, top = sys.argv[1], int(sys.argv[2])
    service = fsc.SensorThingsService(root)

    urls = []
    execute = service.execute

    def recording(method, url, **kwargs):
        urls.append(str(url))
        return execute(method, url, **kwargs)

    service.execute = recording

    things = []
    for thing in service.things().query().expand("Locations").top(top).list():
        datastreams = []
        for ds in thing.get_datastreams().query().top(top).list():
            observations = []
            # The client's own default order direction ("DESC", upper case).
            query = ds.get_observations().query().orderby("phenomenonTime").top(top)
            for obs in query.list():
                observations.append(
                    {"id": obs.id, "result": obs.result, "phenomenonTime": obs.phenomenon_time}
                )
            datastreams.append(
                {
                    "id": ds.id,
                    "name": ds.name,
                    "unit": ds.unit_of_measurement.symbol if ds.unit_of_measurement else None,
                    "observations": observations,
                }
            )
        things.append(
            {
                "id": thing.id,
                "name": thing.name,
                "sensor_id": (thing.properties or {}).get("sensor_id"),
                "locations": [loc.id for loc in (thing.locations or [])],
                "datastreams": datastreams,
            }
        )

    # The same tree in one request through nested $expand, read through the
    # client's entity lists of the expanded collections.
    expanded = {}
    nested = "Datastreams($expand=Observations($orderby=phenomenonTime desc))"
    for thing in service.things().query().expand(nested).top(top).list():
        expanded[str(thing.id)] = {
            str(ds.id): [obs.id for obs in (ds.observations or [])] for ds in (thing.datastreams or [])
        }

    # Single entities by id, as the client builds their paths: an integer
    # Datastream id and a string Observation id (quoted in the path).
    found = {}
    for thing in things:
        for ds in thing["datastreams"]:
            if ds["observations"]:
                obs = service.observations().find(ds["observations"][0]["id"])
                found = {
                    "datastream": service.datastreams().find(ds["id"]).id,
                    "observation": obs.id,
                    "observation_result": obs.result,
                }
                break
        if found:
            break

    json.dump({"things": things, "expanded": expanded, "found": found, "requests": urls}, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
