/**
 * No allow while PostgreSQL is frozen (SIGSTOP to the postmaster and every backend): every MQTT
 * worker answers CONNACK "server unavailable", and the HTTP verifier answers 503 within 5 seconds,
 * for the whole outage.
 */
import { outageSuite } from './outage.js';

outageSuite('frozen');
