/* The main loop: timers fire in deadline order and never early; calls
 * posted from another thread run on the loop. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <pthread.h>

#include "util/main_loop.h"

static int order[8], nr_fired;
static uint64_t fired_at[8], deadline[8];

static void fire(void *opaque)
{
    int id = (int)(intptr_t)opaque;

    fired_at[nr_fired] = clock_ns();
    order[nr_fired++] = id;
    if (nr_fired == 3)
        main_loop_quit();
}

static void timers_fire_in_order(void **state)
{
    struct timer *t[4];
    uint64_t now;

    assert_int_equal(main_loop_init(), 0);
    nr_fired = 0;
    for (int i = 0; i < 4; i++)
        t[i] = timer_new(fire, (void *)(intptr_t)i);
    now = clock_ns();
    deadline[2] = now + 3000000;
    deadline[0] = now + 1000000;
    deadline[1] = now + 2000000;
    timer_mod(t[2], deadline[2]);
    timer_mod(t[0], deadline[0]);
    timer_mod(t[1], deadline[1]);
    timer_mod(t[3], now + 500000);
    timer_del(t[3]);              /* a deleted timer never fires */
    assert_false(timer_pending(t[3]));
    assert_true(timer_pending(t[1]));
    main_loop_run();
    assert_int_equal(nr_fired, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(order[i], i);
        assert_true(fired_at[i] >= deadline[i]);
    }
    for (int i = 0; i < 4; i++)
        timer_free(t[i]);
    main_loop_cleanup();
}

static pthread_t loop_thread;
static bool ran_on_loop;

static void posted(void *opaque)
{
    ran_on_loop = pthread_equal(pthread_self(), loop_thread);
    main_loop_quit();
}

static void *poster(void *arg)
{
    main_loop_call(posted, NULL);
    return NULL;
}

static void calls_posted_from_threads_run_on_loop(void **state)
{
    pthread_t th;

    assert_int_equal(main_loop_init(), 0);
    loop_thread = pthread_self();
    ran_on_loop = false;
    pthread_create(&th, NULL, poster, NULL);
    main_loop_run();
    pthread_join(th, NULL);
    assert_true(ran_on_loop);
    main_loop_cleanup();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(timers_fire_in_order),
        cmocka_unit_test(calls_posted_from_threads_run_on_loop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
