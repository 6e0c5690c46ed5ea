"""The gateway's Prometheus metrics, one series per camera (label `camera_id`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DECODED = Counter("sightline_gateway_frames_decoded_total", "Frames decoded from the camera's source", ["camera_id"])
PICKED = Counter("sightline_gateway_frames_picked_total", "Stills picked from vehicle passes (before the rate cap)",
                 ["camera_id"])
SPOOLED = Counter("sightline_gateway_frames_spooled_total", "Stills written to the spool", ["camera_id"])
SENT = Counter("sightline_gateway_frames_sent_total", "Spooled stills acknowledged by ingest, by outcome "
               "(stored, duplicate, rejected)", ["camera_id", "outcome"])
DROPPED = Counter("sightline_gateway_frames_dropped_total", "Stills dropped before ingest acknowledged them, by "
                  "reason (rate_cap, spool_full)", ["camera_id", "reason"])
SPOOL_BYTES = Gauge("sightline_gateway_spool_bytes", "Bytes of unacknowledged stills in the spool", ["camera_id"])
LINK_UP = Gauge("sightline_gateway_link_up", "1 while the camera's stream to ingest is acknowledging frames",
                ["camera_id"])
SOURCE_UP = Gauge("sightline_gateway_source_up", "1 while the camera's source delivers frames", ["camera_id"])
RECONNECTS = Counter("sightline_gateway_source_reconnects_total", "Times the camera's source was opened again after "
                     "a failure", ["camera_id"])
SOURCE_ERRORS = Counter("sightline_gateway_source_errors_total", "Source failures, by kind (open, read, decode, "
                        "bad_file)", ["camera_id", "kind"])
TRIGGER_TO_ACK = Histogram("sightline_gateway_trigger_to_ack_seconds", "From the frame that started a vehicle pass "
                           "to ingest's acknowledgement of one of its stills", ["camera_id"],
                           buckets=(0.25, 0.5, 1, 2, 3, 5, 8, 13, 21, 60, 300, 3600))
FOLDER_WAITING = Gauge("sightline_gateway_folder_incomplete_files", "Files of a watched folder not complete yet "
                       "(being written, or abandoned half-written)", ["camera_id"])
