/**
 * Every change kind made right after PostgreSQL restarts (stopped, started again on the same port
 * and data directory, the change made as soon as /ready answers): honoured by every MQTT worker
 * for the next connect, and live sessions of the device closed within 5 seconds.
 */
import { changeSuite } from './changes.js';

changeSuite(['restart']);
