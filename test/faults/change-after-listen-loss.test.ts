/**
 * Every change kind made right after every LISTEN connection was terminated
 * (pg_terminate_backend): honoured by every MQTT worker for the next connect, and live sessions
 * of the device closed within 5 seconds.
 */
import { changeSuite } from './changes.js';

changeSuite(['listen-terminated']);
