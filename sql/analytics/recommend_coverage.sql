-- Who has recommendations (orchestration/recommend.py): the number of users and a few example ids.
SELECT count(DISTINCT user_id) AS n_users,
       list(DISTINCT user_id ORDER BY user_id)[1:5] AS examples
FROM serving.recommendations
