/*
 * search_history_queue.h — vms.search_points' history rows queued in shared
 * memory and written by the notifier (search_history_queue.c).
 */
#ifndef VMS_SEARCH_HISTORY_QUEUE_H
#define VMS_SEARCH_HISTORY_QUEUE_H

extern void vms_search_history_request(void);	/* from _PG_init, when preloaded */
extern bool vms_search_history_waiting(void);	/* rows of this database queued? */

#endif
