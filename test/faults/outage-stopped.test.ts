/**
 * No allow while PostgreSQL is stopped: every MQTT worker answers CONNACK "server unavailable" to
 * devices it allowed a moment before, and the HTTP verifier answers 503, for the whole outage.
 */
import { outageSuite } from './outage.js';

outageSuite('stopped');
