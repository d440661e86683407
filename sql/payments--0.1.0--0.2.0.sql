-- payments 0.1.0 -> 0.2.0: upgrade script.  Every change made to the 0.2.0
-- sources (sql/src/) since 0.1.0 is made here too; the upgrade test
-- (test/integration/upgrade_chain.sh) proves that an upgraded installation
-- and a fresh one are the same.

\echo Use "ALTER EXTENSION payments UPDATE TO '0.2.0'" to load this file. \quit
